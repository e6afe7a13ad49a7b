/**
 * The command line as a user meets it: what predict writes for one record, a closed pipe, messages
 * on stderr, flags checked before the model loads, typo suggestions, and output files never
 * replaced without --overwrite.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { GPT2, runCli, withTempDir } from "./train_helpers.ts";

const ROBERTA = "tests/fixtures/models/roberta";
const VIT = "tests/fixtures/models/vit";

Deno.test("predict --data of one record writes a JSON line; one --text or one image file, plain words", async () => {
  await withTempDir("hartley-ux-", async (dir) => {
    const one = join(dir, "one.jsonl");
    await Deno.writeTextFile(one, JSON.stringify({ text: "great film" }) + "\n");
    const cls = await runCli(["predict", "--model", ROBERTA, "--data", one]);
    assertEquals(cls.code, 0, cls.err);
    assertEquals(JSON.parse(cls.out).text, "great film");
    const prompt = join(dir, "prompt.txt");
    await Deno.writeTextFile(prompt, "The jury\n");
    const lm = await runCli(["predict", "--model", GPT2, "--data", prompt, "--max-new-tokens", "2"]);
    assertEquals(lm.code, 0, lm.err);
    assertEquals(JSON.parse(lm.out).prompt, "The jury");
    const text = await runCli(["predict", "--model", ROBERTA, "--text", "great film"]);
    assertEquals(text.code, 0, text.err);
    assert(/^\S+ \(0\.\d+\)$/.test(text.out), text.out);
    // a lone image file is answered as --text is; a folder of one image, as every --data
    const image = await runCli(["predict", "--model", VIT, "--data", "tests/fixtures/images/files/rgba.png"]);
    assertEquals(image.code, 0, image.err);
    assert(/^\S+ \(0\.\d+\)$/.test(image.out), image.out);
    await Deno.mkdir(join(dir, "images"));
    await Deno.copyFile("tests/fixtures/images/files/rgba.png", join(dir, "images", "rgba.png"));
    const folder = await runCli(["predict", "--model", VIT, "--data", join(dir, "images")]);
    assertEquals(folder.code, 0, folder.err);
    assertEquals(JSON.parse(folder.out).file, join(dir, "images", "rgba.png"));
  });
});

/**
 * `cli.ts ARGS` as a subprocess whose stdout is closed after its first output, as `| head -c 3`
 * does; `input.first` is its stdin before, `input.after` after.
 */
async function closedAfterFirstOutput(
  args: string[],
  input?: { first: string; after: string },
): Promise<{ code: number; err: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli.ts", ...args],
    stdin: input ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const err = new Response(child.stderr).text();
  const writer = input ? child.stdin.getWriter() : null;
  const encoder = new TextEncoder();
  await writer?.write(encoder.encode(input!.first));
  const reader = child.stdout.getReader();
  const first = await reader.read();
  await reader.cancel();
  if (first.done) throw new Error(`no output: ${await err}`);
  await writer?.write(encoder.encode(input!.after));
  await writer?.close();
  return { code: (await child.status).code, err: await err };
}

Deno.test("a closed stdout ends predict's stream and chat quietly, with exit status 0", async () => {
  const prompt = [
    "predict",
    "--model",
    GPT2,
    "--task",
    "causal-lm",
    "--text",
    "The jury",
    "--max-new-tokens",
    "60",
  ];
  const predict = await closedAfterFirstOutput(prompt);
  assertEquals(predict, { code: 0, err: "" });
  await withTempDir("hartley-ux-", async (dir) => {
    for (const file of ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]) {
      await Deno.copyFile(join("tests/fixtures/models/gpt2-brown", file), join(dir, file));
    }
    const template = "{% for m in messages %}{{ m.role[0] }}: {{ m.content }}\n{% endfor %}" +
      "{% if add_generation_prompt %}a:{% endif %}";
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: template }));
    // the second answer is written after stdout closed
    const chat = await closedAfterFirstOutput(["chat", "--model", dir, "--max-new-tokens", "4"], {
      first: "The jury said\n",
      after: "and then?\n",
    });
    assertEquals(chat, { code: 0, err: "" });
  });
});

Deno.test("merge and inspect --log say what they wrote on stderr; stdout holds only results", async () => {
  await withTempDir("hartley-ux-", async (dir) => {
    const adapter = "tests/fixtures/adapters/gpt2-lora";
    const merged = await runCli([
      "merge",
      "--model",
      GPT2,
      "--adapter",
      adapter,
      "--out",
      join(dir, "merged"),
    ]);
    assertEquals(merged.code, 0, merged.err);
    assert(!merged.out.includes("wrote"), merged.out);
    assert(merged.err.includes(`merged ${adapter} into ${GPT2}: wrote ${join(dir, "merged")}`), merged.err);
    const log = join(dir, "log.jsonl");
    const records = [{ type: "train", step: 1, loss: 2 }, { type: "train", step: 2, loss: 1.5 }];
    await Deno.writeTextFile(log, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const svg = join(dir, "loss.svg");
    const curve = await runCli(["inspect", "--log", log, "--svg", svg]);
    assertEquals([curve.code, curve.out], [0, ""], curve.err);
    assert(curve.err.includes(`wrote ${svg} (loss curve of ${log})`), curve.err);
  });
});

Deno.test("flags that cannot apply are refused before any model loads: predict --overwrite without --out, inspect's --seed past train's", async () => {
  const overwrite = await runCli(["predict", "--model", GPT2, "--text", "hi", "--overwrite"]);
  assertEquals(overwrite.code, 2, overwrite.err);
  assert(overwrite.err.includes("--overwrite replaces an existing --out file"), overwrite.err);
  const seed = await runCli([
    "inspect",
    "--model",
    GPT2,
    "--layer",
    "h.0.attn.c_attn",
    "--seed",
    String(2 ** 32),
  ]);
  assertEquals(seed.code, 2, seed.err);
  assert(seed.err.includes("--seed"), seed.err);
});
