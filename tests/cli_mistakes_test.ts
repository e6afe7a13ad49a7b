/**
 * The CLI's answers to eval, inspect and pretrain mistakes: the flag that does not apply or does not
 * fit is named (exit 2) before anything loads or is written, a file that cannot be read exits 1, and a
 * stopped pretraining run says the exact command that continues it.
 */
import { join } from "node:path";
import { PRETRAIN_DEFAULT, resumeCommand } from "../lib/cli/pretrain.ts";
import { withArticle } from "../lib/cli/task.ts";
import { pathExists } from "../lib/io/paths.ts";
import { assert, assertEquals } from "./assert.ts";
import { GPT2, runCli, withTempDir } from "./train_helpers.ts";

const TOKENIZER = "tests/fixtures/tokenizers/bytelevel_bpe.json";

/** A tiny pretraining run on `text` into `out` (GPT-2, one layer of 16). */
function tinyPretrain(text: string, out: string, extra: string[] = []): string[] {
  return [
    "pretrain",
    ...["--layers", "1", "--hidden", "16", "--heads", "2", "--positions", "32", "--tokenizer", TOKENIZER],
    ...["--data", text, "--seq-len", "16", "--batch-size", "2", "--steps", "2", "--max-eval", "2"],
    ...["--out", out, "--quiet", ...extra],
  ];
}

/** Some words to pretrain on, in `dir`. */
async function writeText(dir: string): Promise<string> {
  const words = "the cat sat on a mat and the dog ran far away from home while birds sang".split(" ");
  const path = join(dir, "lm.txt");
  await Deno.writeTextFile(path, Array.from({ length: 600 }, (_, i) => words[(i * 5) % 16]).join(" "));
  return path;
}

/** A GPT-2 config.json as pretrain's size flags would write it (1 layer of 16, 32 positions). */
function smallConfig(): Record<string, unknown> {
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    n_layer: 1,
    n_embd: 16,
    n_head: 2,
    n_positions: 32,
    vocab_size: 512,
    bos_token_id: 0,
    eos_token_id: 0,
  };
}

Deno.test("deno task pretrain-default takes --resume: the task does not pass --overwrite", async () => {
  const task = JSON.parse(await Deno.readTextFile("deno.json")).tasks["pretrain-default"] as string;
  assert(!task.split(" ").includes("--overwrite"), task);
  await withTempDir("hartley-fixes-", async (dir) => {
    // the task's arguments, then --resume as `deno task pretrain-default --resume` appends it
    const args = [...PRETRAIN_DEFAULT.split(" "), "--out", join(dir, "run"), "--export", join(dir, "x")];
    const r = await runCli([...args, "--resume"]);
    assertEquals(r.code, 2, r.err);
    assert(!r.err.includes("contradict"), r.err);
    assert(r.err.includes("holds no checkpoint"), r.err);
  });
  // the task's own arguments continue as the task; others as the command they were
  const own = PRETRAIN_DEFAULT.split(" ").slice(1);
  assertEquals(resumeCommand([...own, "--overwrite"]), "deno task pretrain-default --resume");
  assertEquals(
    resumeCommand(["--data", "my text.txt", "--steps", "9", "--stop-at", "3"]),
    "deno run -A cli.ts pretrain --data 'my text.txt' --steps 9 --resume",
  );
});

Deno.test("pretrain: a stopped run names the command that continues it; a finished one asks for --overwrite", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    const text = await writeText(dir);
    const out = join(dir, "run");
    const stopped = await runCli(tinyPretrain(text, out, ["--stop-at", "1"]));
    assertEquals(stopped.code, 0, stopped.err);
    const line = stopped.err.split("\n").find((l) => l.includes("Continue with: "));
    assert(line, stopped.err);
    const command = line.slice(line.indexOf("Continue with: ") + "Continue with: ".length);
    const prefix = "deno run -A cli.ts ";
    assert(command.startsWith(prefix) && command.endsWith(" --resume"), command);
    const resumed = await runCli(command.slice(prefix.length).split(" "));
    assertEquals(resumed.code, 0, resumed.err);
    assert(await pathExists(join(out, "model", "model.safetensors")), "the run finished");
    const again = await runCli(tinyPretrain(text, out));
    assertEquals(again.code, 2, again.err);
    assert(
      again.err.includes(`${out} already holds a run that is finished (step 2 of 2): pass --overwrite`),
      again.err,
    );
  });
});

Deno.test("inspect --log: a run folder is read as its log.jsonl; a folder without one is a usage error, a missing file exit 1", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    const run = join(dir, "run");
    await Deno.mkdir(run);
    await Deno.writeTextFile(
      join(run, "log.jsonl"),
      ['{"type":"train","step":1,"loss":2}', '{"type":"train","step":2,"loss":1.5}', ""].join("\n"),
    );
    const svg = join(dir, "loss.svg");
    const folder = await runCli(["inspect", "--log", run, "--svg", svg]);
    assertEquals(folder.code, 0, folder.err);
    assert((await Deno.readTextFile(svg)).startsWith("<svg"), "an SVG");
    const empty = await runCli(["inspect", "--log", dir, "--svg", svg]);
    assertEquals(empty.code, 2, empty.err);
    assert(empty.err.includes(`--log ${dir} is a folder without log.jsonl`), empty.err);
    const missing = await runCli(["inspect", "--log", join(dir, "none.jsonl"), "--svg", svg]);
    assertEquals(missing.code, 1, missing.err);
    assert(missing.err.includes(`--log ${join(dir, "none.jsonl")}: file not found`), missing.err);
  });
});

Deno.test("inspect: --svg and the heatmap flags without --layer, and model flags without a model, are refused", async () => {
  const model = ["inspect", "--model", GPT2];
  const cases: [string[], string][] = [
    [[...model, "--svg", "x.svg"], "--svg names the SVG of --layer or --log"],
    [[...model, "--n", "3", "--max-cells", "16"], "--n, --max-cells do not apply without --layer"],
    [[...model, "--transform", "dft"], "--transform does not apply without --layer"],
    [["inspect", "--log", "x.jsonl", "--seed", "1"], "--seed does not apply without --layer"],
    [["inspect", "--log", "x.jsonl", "--task", "causal-lm"], "--task does not apply without --model"],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(args);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assert(r.err.includes(message), r.err);
  }
  assert(!await pathExists("x.svg"), "nothing written");
});

Deno.test("pretrain --config and --tokenizer take a folder holding config.json / tokenizer.json", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    const text = await writeText(dir);
    const model = join(dir, "model");
    await Deno.mkdir(model);
    await Deno.writeTextFile(join(model, "config.json"), JSON.stringify(smallConfig()));
    await Deno.copyFile(TOKENIZER, join(model, "tokenizer.json"));
    const run = (out: string, config: string, tokenizer: string) =>
      runCli([
        "pretrain",
        ...["--config", config, "--tokenizer", tokenizer, "--data", text, "--seq-len", "16"],
        ...["--batch-size", "2", "--steps", "1", "--max-eval", "2", "--out", join(dir, out), "--quiet"],
      ]);
    const ok = await run("a", model, model);
    assertEquals(ok.code, 0, ok.err);
    const noConfig = await run("b", dir, model);
    assertEquals(noConfig.code, 1, noConfig.err);
    assert(noConfig.err.includes(`--config ${dir}: a folder without config.json`), noConfig.err);
    const noTokenizer = await run("c", model, dir);
    assertEquals(noTokenizer.code, 1, noTokenizer.err);
    assert(noTokenizer.err.includes(`--tokenizer ${dir}: a folder without tokenizer.json`), noTokenizer.err);
    assert(!await pathExists(join(dir, "b")) && !await pathExists(join(dir, "c")), "nothing written");
  });
});

Deno.test("pretrain: a file that cannot be read exits 1; --seq-len past --positions and size flags with --config exit 2; no init/ is left", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    const text = await writeText(dir);
    const out = join(dir, "run");
    const missingTokenizer = await runCli(tinyPretrain(text, out, ["--tokenizer", join(dir, "none.json")]));
    assertEquals(missingTokenizer.code, 1, missingTokenizer.err);
    assert(
      missingTokenizer.err.includes(`--tokenizer ${join(dir, "none.json")}: file not found`),
      missingTokenizer.err,
    );
    const config = join(dir, "config.json");
    await Deno.writeTextFile(config, "{ not json");
    const broken = await runCli([
      "pretrain",
      ...["--config", config, "--data", text, "--seq-len", "16", "--steps", "1", "--out", out, "--quiet"],
    ]);
    assertEquals(broken.code, 1, broken.err);
    assert(broken.err.includes(`--config ${config}: not JSON`), broken.err);

    const long = await runCli(tinyPretrain(text, out, ["--seq-len", "64"]));
    assertEquals(long.code, 2, long.err);
    assert(long.err.includes("--seq-len 64 is more than --positions 32"), long.err);
    const noData = await runCli(tinyPretrain(join(dir, "none.txt"), out));
    assertEquals(noData.code, 1, noData.err);
    assert(noData.err.includes(`${join(dir, "none.txt")}: file not found`), noData.err);
    assert(!await pathExists(join(out, "init")), "no init/ left by a run that never started");

    await Deno.writeTextFile(config, JSON.stringify(smallConfig()));
    const sized = await runCli([
      "pretrain",
      ...["--config", config, "--layers", "4", "--family", "llama", "--data", text, "--out", out],
    ]);
    assertEquals(sized.code, 2, sized.err);
    assert(sized.err.includes("--family, --layers do not apply with --config"), sized.err);
    const past = await runCli([
      "pretrain",
      ...["--config", config, "--data", text, "--seq-len", "40", "--out", out],
    ]);
    assertEquals(past.code, 2, past.err);
    assert(past.err.includes(`--seq-len 40 is more than the 32 positions of --config ${config}`), past.err);
    assert(!await pathExists(out), "nothing written");
  });
});

Deno.test("--task that the model's family has no head for is a usage error listing the --task values that fit", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    const text = await writeText(dir);
    const roberta = "tests/fixtures/models/roberta";
    const commands = [
      ["eval", "--model", roberta, "--task", "causal-lm", "--data", text],
      ["train", "--model", roberta, "--task", "causal-lm", "--data", text, "--out", join(dir, "run")],
    ];
    for (const args of commands) {
      const r = await runCli(args);
      assertEquals(r.code, 2, r.err);
      assert(
        r.err.includes(
          `--task causal-lm does not fit ${roberta}: a roberta model has no causal-lm head; give --task seq-cls or token-cls`,
        ),
        r.err,
      );
      assert(!r.err.includes("base"), r.err);
    }
  });
});

Deno.test("no --data for a task without a built-in data set is a usage error (exit 2), before the model loads", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    const commands = [
      ["train", "--model", GPT2, "--task", "token-cls", "--out", join(dir, "run")],
      ["eval", "--model", GPT2, "--task", "token-cls"],
    ];
    for (const args of commands) {
      const r = await runCli(args);
      assertEquals(r.code, 2, `${args[0]}: ${r.err}`);
      assert(r.err.includes("task token-cls has no built-in data set: pass --data FILE"), r.err);
    }
  });
});

Deno.test("eval: flags that do not apply are refused before the weights load; a missing --model folder is named so", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    // a model folder whose weights cannot load: only a refusal before loading them exits 2
    const model = join(dir, "model");
    await Deno.mkdir(model);
    for (const f of ["config.json", "tokenizer.json"]) await Deno.copyFile(join(GPT2, f), join(model, f));
    const regression = await runCli(["eval", "--model", model, "--task", "causal-lm", "--regression"]);
    assertEquals(regression.code, 2, regression.err);
    assert(regression.err.includes("--regression does not apply to task causal-lm"), regression.err);
    const kwargs = await runCli(["eval", "--model", model, "--template-kwargs", "{nope"]);
    assertEquals(kwargs.code, 2, kwargs.err);
    assert(kwargs.err.includes("--template-kwargs: not JSON"), kwargs.err);
    const none = await runCli(["eval", "--model", join(dir, "nonexistent")]);
    assertEquals(none.code, 1, none.err);
    assert(none.err.includes(`${join(dir, "nonexistent")}: the folder does not exist`), none.err);
  });
});

Deno.test("eval: text shorter than one window names --data and --seq-len; the help says how text is windowed", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    const short = join(dir, "short.txt");
    await Deno.writeTextFile(short, "abc");
    const r = await runCli(["eval", "--model", GPT2, "--data", short, "--seq-len", "8"]);
    assertEquals(r.code, 1, r.err);
    assert(
      /--data .*short\.txt: \d tokens make no window of --seq-len 8 \+ 1 tokens: lower --seq-len/.test(r.err),
      r.err,
    );
    const help = (await runCli(["eval", "--help"])).out.replace(/\s+/g, " ");
    assert(!help.includes("evaluated whole"), help);
    assert(help.includes("non-overlapping windows of --seq-len + 1 tokens"), help);
  });
});

Deno.test("eval --json writes NaN as the run log does; multi-label F1 is printed as micro", async () => {
  await withTempDir("hartley-fixes-", async (dir) => {
    const words = ["apple", "stone", "cloud", "rain", "iron", "melon"];
    const rows = (n: number, label: (i: number) => unknown) =>
      Array.from(
        { length: n },
        (_, i) => JSON.stringify({ text: `${words[i % 6]} ${words[(i * 5) % 6]}`, label: label(i) }),
      )
        .join("\n") + "\n";
    const head = (data: string, out: string, extra: string[] = []) =>
      runCli([
        "train",
        ...["--model", GPT2, "--method", "head", "--data", data, "--steps", "1", "--eval-fraction", "0"],
        ...["--seq-len", "8", "--batch-size", "4", "--out", join(dir, out), "--quiet", ...extra],
      ]);
    await Deno.writeTextFile(join(dir, "reg.jsonl"), rows(8, (i) => i % 4));
    await Deno.writeTextFile(join(dir, "flat.jsonl"), rows(4, () => 2));
    const reg = await head(join(dir, "reg.jsonl"), "reg", ["--regression"]);
    assertEquals(reg.code, 0, reg.err);
    const e = await runCli([
      "eval",
      "--model",
      join(dir, "reg", "model"),
      "--data",
      join(dir, "flat.jsonl"),
      "--json",
    ]);
    assertEquals(e.code, 0, e.err);
    assertEquals(JSON.parse(e.out).pearson, "NaN");

    const tags = [["fruit"], ["fruit", "hard"], [], ["hard"]];
    await Deno.writeTextFile(join(dir, "ml.jsonl"), rows(8, (i) => tags[i % 4]));
    const ml = await head(join(dir, "ml.jsonl"), "ml");
    assertEquals(ml.code, 0, ml.err);
    const m = await runCli(["eval", "--model", join(dir, "ml", "model"), "--data", join(dir, "ml.jsonl")]);
    assertEquals(m.code, 0, m.err);
    assert(/f1 micro [\d.]+, f1 macro/.test(m.out), m.out);
  });
});

Deno.test("withArticle: 'an' before a vowel's sound, numbers by their first word", () => {
  const said = ["image-cls", "seq-cls", "8-class", "11-class", "18-class", "110-class", "80-class", "2-class"]
    .map(withArticle);
  assertEquals(said, [
    "an image-cls",
    "a seq-cls",
    "an 8-class",
    "an 11-class",
    "an 18-class",
    "a 110-class",
    "an 80-class",
    "a 2-class",
  ]);
  assertEquals(["11,000-token", "1,100-token", "18000-token"].map(withArticle), [
    "an 11,000-token",
    "a 1,100-token",
    "an 18000-token",
  ]);
});
