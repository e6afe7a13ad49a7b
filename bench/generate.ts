/**
 * Greedy generation with the key/value cache against one full forward pass per new token (what
 * `generate` did before the cache), side by side on the same model, prompt and tokens: wall
 * milliseconds per generated token, readbacks included, the two taking turns.
 *
 *     deno run -A bench/generate.ts [--model DIR] [--prompt-tokens 64] [--new-tokens 64] [--reps 3]
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { generate } from "../lib/train/predict.ts";
import { median, table } from "./stats.ts";

const { values: v } = parseArgs({
  options: {
    model: {
      type: "string",
      default: new URL("../tests/fixtures/models/gpt2-brown", import.meta.url).pathname,
    },
    "prompt-tokens": { type: "string", default: "64" },
    "new-tokens": { type: "string", default: "64" },
    reps: { type: "string", default: "3" },
  },
});
const promptTokens = Number(v["prompt-tokens"]), newTokens = Number(v["new-tokens"]), reps = Number(v.reps);

/** Greedy continuation by full passes over the whole sequence (no cache). */
async function uncached(model: Model, prompt: number[], n: number): Promise<number[]> {
  const ids = [...prompt];
  while (ids.length < prompt.length + n) {
    const host = Int32Array.from(ids);
    const logits = tidy(() =>
      noGrad(() => {
        const batch = {
          inputIds: Tensor.from(model.gpu, host, [1, host.length]),
          inputIdsHost: host,
          attentionMask: new Int32Array(host.length).fill(1),
        };
        return { v: model.forward(batch, { lastLogits: true }).logits.readLater() };
      })
    ).v;
    model.gpu.stream.flush();
    const l = await logits;
    ids.push(l.indexOf(Math.max(...l)));
  }
  return ids;
}

const gpu = await getGpu();
const model = await loadModel(gpu, v.model!);
const tokenizer = await loadModelTokenizer(model.config);
const vocab = "vocabSize" in model.config ? model.config.vocabSize : 1;
const prompt = Array.from({ length: promptTokens }, (_, i) => (i * 37 + 11) % vocab);
const cachedMs: number[] = [], fullMs: number[] = [];
let same = true;
for (let r = 0; r <= reps; r++) { // the first round warms the pipelines up
  let t0 = performance.now();
  const g = await generate(model, tokenizer, prompt, { maxNewTokens: newTokens, stopAtEos: false });
  const a = (performance.now() - t0) / newTokens;
  t0 = performance.now();
  const ids = await uncached(model, prompt, newTokens);
  const b = (performance.now() - t0) / newTokens;
  same &&= ids.join() === g.ids.join();
  if (r > 0) [cachedMs.push(a), fullMs.push(b)];
}
model.dispose();
const c = median(cachedMs), f = median(fullMs);
console.log(`${v.model}: ${promptTokens}-token prompt, ${newTokens} new tokens, ${gpu.description}`);
console.log(table(["generation", "ms/token", "vs full passes"], [
  ["full pass per token", f.toFixed(2), "1.00×"],
  ["key/value cache", c.toFixed(2), `${(c / f).toFixed(2)}×`],
]));
console.log(same ? "the same tokens" : "DIFFERENT TOKENS");
