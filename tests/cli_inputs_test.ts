/**
 * The CLI's checks of its inputs: output paths that would replace inputs or are folders, sampling
 * values generation cannot use, and missing or wrong files, each refused with a message that
 * names the flag or file (exit 2 for a bad flag) before anything is computed or written.
 */
import { join } from "node:path";
import { chatCommand } from "../lib/cli/chat.ts";
import { pathExists } from "../lib/io/paths.ts";
import { assert, assertEquals } from "./assert.ts";
import { GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

/** A copy of the GPT-2 fixture in `dir`, with only the files named. */
async function copyGpt2(dir: string, files: string[]): Promise<string> {
  await Deno.mkdir(dir);
  for (const f of files) await Deno.copyFile(join(GPT2, f), join(dir, f));
  return dir;
}

Deno.test("predict --out: never the --data file, a directory refused up front, an existing file needs --overwrite", async () => {
  await withTempDir("hartley-inputs-", async (dir) => {
    const data = await writeToyData(dir, 2);
    const gold = await Deno.readTextFile(data);
    const predict = (out: string, extra: string[] = []) =>
      runCli([
        "predict",
        "--model",
        GPT2,
        "--task",
        "causal-lm",
        "--max-new-tokens",
        "1",
        "--data",
        data,
        "--out",
        out,
        ...extra,
      ]);
    for (const extra of [[], ["--overwrite"]]) {
      const same = await predict(data, extra);
      assertEquals(same.code, 2, same.err);
      assert(same.err.includes(`--out ${data} is the --data file`), same.err);
    }
    await Deno.symlink(data, join(dir, "link.jsonl"));
    const linked = await predict(join(dir, "link.jsonl"), ["--overwrite"]);
    assert(linked.code === 2 && linked.err.includes("is the --data file"), linked.err);
    assertEquals(await Deno.readTextFile(data), gold, "the gold labels stay");

    const folder = await predict(dir);
    assert(folder.code === 2 && folder.err.includes(`--out ${dir} is a directory`), folder.err);

    const out = join(dir, "out.jsonl");
    await Deno.writeTextFile(out, "keep\n");
    const exists = await predict(out);
    assert(exists.code === 2 && exists.err.includes("pass --overwrite"), exists.err);
    assertEquals(await Deno.readTextFile(out), "keep\n");
    const replaced = await predict(out, ["--overwrite"]);
    assertEquals(replaced.code, 0, replaced.err);
    assertEquals((await Deno.readTextFile(out)).trim().split("\n").length, 2);
  });
});

Deno.test("inspect --svg: a directory is refused before anything is computed", async () => {
  await withTempDir("hartley-inputs-", async (dir) => {
    const r = await runCli(["inspect", "--model", GPT2, "--layer", "h.0.attn.c_attn", "--svg", dir]);
    assertEquals(r.code, 2, r.err);
    assert(r.err.includes(`--svg ${dir} is a directory`), r.err);
  });
});

Deno.test("predict and chat: --top-p 0 and --repetition-penalty 0 are refused before the model loads", async () => {
  const bad = [
    [["--top-p", "0"], "--top-p 0 is out of range: it must be in (0, 1]"],
    [["--repetition-penalty", "0"], "--repetition-penalty 0 is out of range: it must be above 0"],
  ] as const;
  for (const [flag, message] of bad) {
    const r = await runCli([
      "predict",
      "--model",
      GPT2,
      "--task",
      "causal-lm",
      "--text",
      "The jury",
      ...flag,
    ]);
    assertEquals(r.code, 2, r.err);
    assert(r.err.includes(message) && r.out === "", r.err);
  }
  // chat, with a template so that the model itself would answer
  await withTempDir("hartley-inputs-", async (dir) => {
    const model = await copyGpt2(join(dir, "model"), ["config.json", "model.safetensors", "tokenizer.json"]);
    await Deno.writeTextFile(
      join(model, "tokenizer_config.json"),
      JSON.stringify({ chat_template: "{% for m in messages %}{{ m.content }}{% endfor %}" }),
    );
    for (const [flag, message] of bad) {
      const written: string[] = [], errors: string[] = [];
      const error = console.error;
      console.error = (...a: unknown[]) => void errors.push(a.join(" "));
      try {
        const code = await chatCommand(["--model", model, "--max-new-tokens", "2", ...flag], {
          input: ReadableStream.from([new TextEncoder().encode("hello\n")]),
          write: (t) => void written.push(t),
          prompt: false,
        });
        assertEquals(code, 2, errors.join("\n"));
      } finally {
        console.error = error;
      }
      assert(errors.join("\n").includes(message), errors.join("\n"));
      assertEquals(written, [], "nothing answered");
    }
  });
});

Deno.test("a text model's directory without tokenizer.json: the error names the directory", async () => {
  await withTempDir("hartley-inputs-", async (dir) => {
    const model = await copyGpt2(join(dir, "model"), ["config.json", "model.safetensors"]);
    const r = await runCli(["predict", "--model", model, "--task", "causal-lm", "--text", "hi"]);
    assertEquals(r.code, 1, r.err);
    assert(
      r.err.includes(`model directory ${model} has no tokenizer.json`) && !r.err.includes("os error"),
      r.err,
    );
  });
});

Deno.test("train --out: an existing file is refused as not a directory", async () => {
  await withTempDir("hartley-inputs-", async (dir) => {
    const data = await writeToyData(dir, 10);
    const out = join(dir, "run");
    await Deno.writeTextFile(out, "a file\n");
    const r = await runCli(tinyRun(data, out, ["--steps", "1"]));
    assertEquals(r.code, 2, r.err);
    assert(r.err.includes(`--out ${out}: it is a file, not a folder`), r.err);
  });
});

Deno.test("pretrain: --tokenizer must be a tokenizer.json (exit 1); llama's heads need an even size; nothing is written", async () => {
  await withTempDir("hartley-inputs-", async (dir) => {
    const out = join(dir, "run");
    const tiny = ["--out", out, "--steps", "1", "--seq-len", "8"];
    const text = join(dir, "words.txt");
    await Deno.writeTextFile(text, "not a tokenizer\n");
    const notJson = await runCli([
      "pretrain",
      "--tokenizer",
      text,
      ...tiny,
    ]);
    assertEquals(notJson.code, 1, notJson.err);
    assert(notJson.err.includes(`--tokenizer ${text}: not JSON; it must be a tokenizer.json`), notJson.err);

    const odd = await runCli([
      "pretrain",
      "--family",
      "llama",
      "--hidden",
      "12",
      "--heads",
      "4",
      ...tiny,
    ]);
    assertEquals(odd.code, 2, odd.err);
    assert(odd.err.includes("--hidden 12 / --heads 4 gives heads of 3 dimensions"), odd.err);
    assert(!await pathExists(out), "nothing written");

    // a --config the size flags do not check: refused by the initialisation, still before writing
    const config = join(dir, "config.json");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        architectures: ["LlamaForCausalLM"],
        model_type: "llama",
        hidden_size: 12,
        intermediate_size: 24,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        vocab_size: 512,
      }),
    );
    const bad = await runCli([
      "pretrain",
      "--config",
      config,
      ...tiny,
    ]);
    assertEquals(bad.code, 1, bad.err);
    assert(bad.err.includes("head_dim 3"), bad.err);
    assert(!await pathExists(join(out, "init")), "no empty init/ left");
  });
});

Deno.test("train: --eval-every/--save-best/--early-stop with a held-out split that comes out empty is a usage error", async () => {
  await withTempDir("hartley-inputs-", async (dir) => {
    const data = join(dir, "four.csv"); // 10% of 4 rows, two a class: none held out
    await Deno.writeTextFile(data, "text,label\napple pie,fruit\nrock,hard\npear,fruit\nstone,hard\n");
    const r = await runCli(
      tinyRun(data, join(dir, "run"), [
        "--steps",
        "2",
        "--eval-fraction",
        "0.1",
        "--eval-every",
        "1",
        "--save-best",
      ]),
    );
    assertEquals(r.code, 2, r.err);
    assert(r.err.includes("--eval-every and --save-best need eval data"), r.err);
    assert(!(await pathExists(join(dir, "run", "log.jsonl"))), "nothing trained");
  });
});
