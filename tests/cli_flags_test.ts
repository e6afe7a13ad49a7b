/**
 * Usage mistakes, each refused with exit status 2 and a message naming the flag and what was
 * expected: flags the method or task does not use, values that would do nothing, numbers in
 * other notations, misspelt flags, and paths of the wrong kind; and the messages of paths that
 * are files where a folder is expected.
 */
import { nearestFlag, parseCommand } from "../lib/cli/args.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { GPT2, runCli, withTempDir, writeToyData } from "./train_helpers.ts";

const TINY_TXT = "tests/fixtures/data/tiny.txt";
const ROBERTA = "tests/fixtures/models/roberta";

/** Assert that `r` is a usage mistake whose message holds `text`. */
function assertUsage(r: { code: number; err: string }, text: string): void {
  assertEquals(r.code, 2, r.err);
  assert(r.err.includes(text), `expected "${text}" in:\n${r.err}`);
}

Deno.test("args: suggestions by edit distance (_ as -), none when nothing is close", () => {
  const train = ["eval-data", "eval-every", "eval-fraction", "max-grad-norm", "max-train", "lr"];
  assertEquals(nearestFlag("--eval_every", train), "eval-every");
  assertEquals(nearestFlag("--max-new-tokens", train), undefined);
  assertEquals(nearestFlag("--lrr", train), "lr");
  assertEquals(nearestFlag("--max-trian", train), "max-train");
  // two swapped letters count one; a flag's beginning names it when only one begins so; transformers' names
  assertEquals(nearestFlag("--quite", ["quiet", "out"]), "quiet");
  assertEquals(nearestFlag("--warmup", ["warmup-ratio", "weight-decay"]), "warmup-ratio");
  assertEquals(
    nearestFlag("--eval", train),
    undefined,
    "eval-data, eval-every and eval-fraction all begin so",
  );
  assertEquals(nearestFlag("--learning-rate", train), "lr");
  assertEquals(nearestFlag("--output_dir", ["out", "model"]), "out");
  assertEquals(nearestFlag("--num-train-epochs", ["epochs"]), "epochs");
  assertEquals(nearestFlag("--num-train-epochs", ["steps"]), undefined, "only a flag the command has");
});

Deno.test("help COMMAND shows the command's options, as COMMAND --help does", async () => {
  const help = await runCli(["help", "train"]), flag = await runCli(["train", "--help"]);
  assertEquals([help.code, help.out], [0, flag.out]);
  assert(help.out.includes("--method"), help.out);
  assertEquals((await runCli(["help"])).code, 0);
});

Deno.test("a misspelt command is answered with the one it was likely meant as", async () => {
  const r = await runCli(["trian", "--model", ROBERTA]);
  assertUsage(r, "unknown command 'trian' (did you mean train?)");
});

Deno.test("args: integers in decimal digits only; a negative value's range error said directly", () => {
  const spec = {
    name: "t",
    summary: "t",
    flags: {
      steps: { type: "integer", min: 1, help: "steps" },
      lr: { type: "number", above: 0, help: "lr" },
    },
  } as const;
  for (const text of ["0x10", "1e1", "0b1", "10.0"]) {
    assertThrows(() => parseCommand(spec, ["--steps", text]), `--steps '${text}' is not an integer`);
  }
  assertThrows(() => parseCommand(spec, ["--lr", "0x1"]), "--lr '0x1' is not a number");
  const ok = parseCommand(spec, ["--lr", "1e-3", "--steps", "12"]);
  assert(!ok.help && ok.values.lr === 1e-3 && ok.values.steps === 12);
  assertThrows(() => parseCommand(spec, ["--steps", "-1"]), "--steps -1 is below the minimum 1");
  assertThrows(() => parseCommand(spec, ["--lr", "-1"]), "--lr -1 is out of range: it must be above 0");
  assertThrows(() => parseCommand(spec, ["--lr", "0"]), "--lr 0 is out of range: it must be above 0");
});

Deno.test("cli: misspelt flags suggest the nearest one; options before the command are pointed after it", async () => {
  assertUsage(
    await runCli(["train", "--eval_every", "3"]),
    "unknown option '--eval_every' (did you mean --eval-every?)",
  );
  const far = await runCli(["train", "--max-new-tokens", "3"]);
  assertUsage(far, "unknown option '--max-new-tokens'");
  assert(!far.err.includes("did you mean"), far.err);
  assertUsage(await runCli(["train", "--steps", "-1"]), "--steps -1 is below the minimum 1");
  // seeds are 32-bit (data order, dropout, GPU sampling): a larger one is a usage mistake, not a crash
  for (const command of ["train", "pretrain", "predict"]) {
    assertUsage(
      await runCli([command, "--seed", "4294967296"]),
      "--seed 4294967296 is above the maximum 4294967295",
    );
  }
  const before = await runCli(["--model", "x", "train"]);
  assertUsage(before, "options come after the command: deno run -A cli.ts train [options]");
});

Deno.test("cli: train refuses flags its method or task does not use, and values that would do nothing", async () => {
  await withTempDir("hartley_flags_", async (dir) => {
    const data = await writeToyData(dir, 8);
    const out = ["--out", `${dir}/run`, "--steps", "1", "--seq-len", "12"];
    const cls = ["train", "--model", GPT2, "--data", data, ...out];
    assertUsage(
      await runCli([...cls, "--r", "4"]),
      "--r does not apply to --method ssh (--r applies to lora)",
    );
    assertUsage(
      await runCli([...cls, "--method", "lora", "--n", "100", "--transform", "dft", "--init", "zeros"]),
      "--n, --transform, --init do not apply to --method lora",
    );
    assertUsage(
      await runCli([...cls, "--method", "head", "--lr", "0.1"]),
      "--lr does not apply to --method head",
    );
    const txt = ["train", "--model", GPT2, "--data", TINY_TXT, ...out];
    assertUsage(await runCli([...txt, "--head-lr", "0.1"]), "--head-lr does not apply to task causal-lm");
    assertUsage(
      await runCli([...txt, "--label-field", "y", "--pair-field", "z"]),
      "--pair-field, --label-field do not apply to task causal-lm",
    );
    for (const [flag, extra] of [["--alpha", []], ["--lr", []], ["--lora-alpha", ["--method", "lora"]]]) {
      assertUsage(
        await runCli([...cls, ...extra, flag as string, "0"]),
        `${flag} 0 is out of range: it must be above 0`,
      );
    }
    assertUsage(
      await runCli(["train", "--model", GPT2, "--data", "spamassassin", "--eval-data", data, ...out]),
      "--eval-data cannot be used with --data spamassassin",
    );
    // the adapter's own checks, as usage mistakes naming the flag
    assertUsage(
      await runCli([...txt, "--target-modules", "foo"]),
      `--target-modules: target module "foo" matches no`,
    );
    assertUsage(
      await runCli([...txt, "--n", "100000"]),
      "--n 100000: transformer.h.0.attn.c_attn: n = 100000",
    );
    assert(!(await Deno.stat(`${dir}/run/checkpoint`).catch(() => null)), "nothing trained");
  });
});

Deno.test("cli: eval refuses flags its task does not use; a .txt for a classifier names the formats", async () => {
  assertUsage(
    await runCli(["eval", "--model", GPT2, "--data", TINY_TXT, "--seq-len", "12", "--regression"]),
    "--regression does not apply to task causal-lm",
  );
  const pairs = "tests/fixtures/data/pairs.csv";
  assertUsage(
    await runCli(["eval", "--model", ROBERTA, "--data", pairs, "--loss-on", "all"]),
    "--loss-on does not apply to task seq-cls",
  );
  const txt = await runCli(["eval", "--model", ROBERTA, "--data", TINY_TXT]);
  assertEquals(txt.code, 1, txt.err);
  assert(txt.err.includes("expected a .jsonl, .ndjson, .json, .csv, .tsv or .parquet file"), txt.err);
  assert(!txt.err.includes("option"), txt.err);
});

Deno.test("cli: a file where a folder is expected is named so; an output's missing folder is refused before any work", async () => {
  const model = await runCli(["predict", "--model", "README.md", "--text", "hi"]);
  assertEquals(model.code, 1, model.err);
  assert(model.err.includes("README.md: not a model directory (it is a file)"), model.err);
  assert(!model.err.includes("os error"), model.err);
  const adapter = await runCli(["predict", "--adapter", "README.md", "--text", "hi"]);
  assertEquals(adapter.code, 1, adapter.err);
  assert(adapter.err.includes("README.md: not an adapter directory (it is a file)"), adapter.err);
  await withTempDir("hartley_flags_", async (dir) => {
    const predict = await runCli(["predict", "--model", GPT2, "--text", "hi", "--out", `${dir}/no/x.jsonl`]);
    assertUsage(predict, `--out ${dir}/no/x.jsonl: its folder ${dir}/no does not exist`);
    const svg = await runCli(["inspect", "--model", GPT2, "--layer", "c_fc", "--svg", `${dir}/no/l.svg`]);
    assertUsage(svg, `--svg ${dir}/no/l.svg: its folder ${dir}/no does not exist`);
    assertEquals(svg.out, "", "no summary printed: nothing was loaded");
  });
  const merge = await runCli([
    "merge",
    "--model",
    ROBERTA,
    "--adapter",
    "tests/fixtures/adapters/roberta-lora",
    "--out",
    "README.md",
    "--overwrite",
  ]);
  assertUsage(merge, "--out README.md: it is a file, not a folder");
  // an output folder under a file, or where no folder can be made: exit 2 before any loading, the flag named
  const adapterArgs = ["--adapter", "tests/fixtures/adapters/roberta-lora", "--model", ROBERTA];
  for (const out of ["README.md/merged", "/proc/no/merged"]) {
    const r = await runCli(["merge", ...adapterArgs, "--out", out]);
    assertUsage(r, `--out ${out}: `);
    assertEquals(r.out, "", "nothing loaded");
  }
  assertUsage(await runCli(["merge", ...adapterArgs, "--out", "README.md/m"]), "README.md is a file");
  for (const command of ["train", "pretrain"]) {
    const r = await runCli([command, "--out", "README.md/run"]);
    assertUsage(r, "--out README.md/run: README.md is a file; give another folder");
  }
  assertUsage(
    await runCli(["train", "--out", "/proc/no/run"]),
    "--out /proc/no/run: cannot create a folder in /proc",
  );
});

Deno.test("predict --help's example is a text the demo's adapter labels spam (the README's)", async () => {
  const help = await runCli(["predict", "--help"]);
  assert(help.out.includes("--text $'MAKE MONEY FAST!\\nDear friend, GET RICH"), help.out);
  const readme = await Deno.readTextFile("README.md");
  assert(readme.includes("--text $'MAKE MONEY FAST!\\nDear friend, GET RICH"), "the README's example");
});

Deno.test("README's command table names every flag of each command's --help, and no other", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const rows = new Map<string, string>();
  for (const line of readme.split("\n")) {
    const cells = line.split(/(?<!\\)\|/).map((c) => c.trim());
    const name = /^`([a-z]+)`$/.exec(cells[1] ?? "")?.[1];
    if (name && cells.length >= 4) rows.set(name, `${cells[2]} ${cells[3]}`);
  }
  const flagsOf = (text: string) => new Set([...text.matchAll(/--([a-z0-9-]+)/g)].map((m) => m[1]));
  for (const command of ["train", "eval", "predict", "chat", "merge", "inspect", "pretrain"]) {
    const help = await runCli([command, "--help"]);
    assertEquals(help.code, 0, help.err);
    const helpFlags = new Set(
      [...(help.out + help.err).matchAll(/^\s+(?:-[a-z], )?--([a-z0-9-]+)/gm)].map((m) => m[1]),
    );
    helpFlags.delete("help");
    assert(rows.has(command), `README's command table has no \`${command}\` row`);
    const listed = flagsOf(rows.get(command)!);
    assertEquals(
      [...helpFlags].filter((f) => !listed.has(f)).sort(),
      [],
      `${command}: flags README leaves out`,
    );
    assertEquals(
      [...listed].filter((f) => !helpFlags.has(f)).sort(),
      [],
      `${command}: README flags --help lacks`,
    );
  }
});
