// The CLI on a quantized base (--dtype q4): SSH trains on it, and eval, predict and inspect load it.
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

Deno.test("cli --dtype q4: SSH trains on 4-bit frozen weights; eval, predict and inspect load them", async () => {
  await withTempDir("hartley_quant_", async (dir) => {
    const colours = ["red", "blue", "green", "white"];
    const data = join(dir, "sft.jsonl");
    const rows = Array.from(
      { length: 16 },
      (_, i) => ({ prompt: `Colour ${i % 4}:`, completion: ` ${colours[i % 4]}` }),
    );
    await Deno.writeTextFile(data, rows.map((r) => JSON.stringify(r)).join("\n"));
    const model = fixtureModel("gpt2-brown");
    const args = ["--model", model, "--data", data, "--batch-size", "8", "--seq-len", "96", "--dtype", "q4"];
    const loss = (out: string) => Number(out.match(/loss ([\d.]+)/)![1]);
    const before = await runCli(["eval", ...args]);
    assertEquals(before.code, 0, before.err);
    const full = await runCli([
      "train",
      ...args,
      "--method",
      "full",
      "--steps",
      "1",
      "--out",
      join(dir, "full"),
    ]);
    assertEquals(full.code, 2, full.err);
    assert(
      full.err.includes("--method full trains every weight, in f32: --dtype q4 stores frozen weights"),
      full.err,
    );
    const run = join(dir, "run");
    const r = await runCli([
      "train",
      ...args,
      "--method",
      "ssh",
      "--lr",
      "0.1",
      "--steps",
      "8",
      "--eval-every",
      "4",
      "--save-best",
      "--best-metric",
      "token-accuracy",
      "--out",
      run,
    ]);
    assertEquals(r.code, 0, r.err);
    // the best evaluation by token accuracy is kept
    assert((await Deno.stat(join(run, "best", "adapter"))).isDirectory, r.err);
    assert(/held-out: loss [\d.]+, perplexity [\d.]+, token accuracy [\d.]+/.test(r.err), r.err);
    assert(/best held-out token accuracy [\d.]+ at step [48]/.test(r.err), r.err);
    // every block's linear weight is quantized; the LM head is GPT-2's embedding table, as q8
    assert(
      /storage linear weights 16 q4, 1 q8; parameters [\d.]+ KiB \([\d.]+ MiB as f32\)/.test(r.err),
      r.err,
    );
    const after = await runCli(["eval", ...args, "--adapter", join(run, "adapter")]);
    assertEquals(after.code, 0, after.err);
    assert(loss(after.out) < loss(before.out) - 2, `${before.out} → ${after.out}`);
    const p = await runCli([
      "predict",
      "--model",
      model,
      "--adapter",
      join(run, "adapter"),
      "--dtype",
      "q4",
      "--text",
      "Colour 1:",
      "--max-new-tokens",
      "2",
      "--json",
    ]);
    assertEquals(p.code, 0, p.err);
    const answer = JSON.parse(p.out);
    assert(answer.tokens === 2 || answer.stop === "eos", p.out);
    const i = await runCli(["inspect", "--model", model, "--dtype", "q8"]);
    assertEquals(i.code, 0, i.err);
    assert(i.out.includes("storage   linear weights 17 q8;"), i.out);
  });
});
