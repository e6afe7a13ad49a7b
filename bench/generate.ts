/**
 * Greedy generation three ways, side by side on the same model, prompt and tokens: one full
 * forward pass per new token (what `generate` did before its key/value cache); the cache with the
 * logits read back for each token (top-k 1 sampling, picked on the CPU); and `generate`'s greedy
 * path, the cache with the tokens picked on the GPU and read back 16 at a time. Wall milliseconds
 * per generated token, readbacks included, the three taking turns. Then 8 prompts of different
 * lengths one after another against `generateBatch` (one left-padded batch): ms per token of all.
 * Then where one cached token's time goes: its dispatches, the CPU's recording of them, the
 * submit, the wait for its logits, and a bare 4-byte readback. Then the CPU's time to sample one
 * token from 151,936 logits (Qwen2's vocabulary, spread as N(0, 3²)) with top-p, top-k or neither,
 * and the GPU's draw over them; last, sampled generation with the GPU's draws and the CPU's.
 *
 *     deno run -A bench/generate.ts [--model DIR] [--prompt-tokens 64] [--new-tokens 64] [--reps 3] [--no-gemv]
 *
 * `--no-gemv` runs the few-row products on the `m8` tile instead of the GEMV kernel.
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { MATMUL_HEURISTICS } from "../lib/linalg/matmul_plan.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { maxTokens } from "../lib/io/hf_config.ts";
import { generate, generateBatch } from "../lib/infer/generate.ts";
import { sampleToken } from "../lib/infer/sampling.ts";
import { sampleTokens } from "../lib/tensor/ops/sample.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { median, table } from "./stats.ts";

const { values: v } = benchArgs(import.meta.url, {
  model: {
    type: "string",
    default: new URL("../tests/fixtures/models/gpt2-brown", import.meta.url).pathname,
  },
  "prompt-tokens": { type: "string", default: "64" },
  "new-tokens": { type: "string", default: "64" },
  reps: { type: "string", default: "3" },
  "no-gemv": { type: "boolean", default: false },
});
if (v["no-gemv"]) MATMUL_HEURISTICS.gemvRows = 0;
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
const runs = {
  full: (n: number) => uncached(model, prompt, n),
  // sampled on the CPU (no top-k) at a temperature that leaves the most probable token alone: a readback per token
  perToken: async (n: number) =>
    (await generate(model, tokenizer, prompt, { maxNewTokens: n, temperature: 1e-6, stopAtEos: false })).ids,
  gpu: async (n: number) =>
    (await generate(model, tokenizer, prompt, { maxNewTokens: n, stopAtEos: false })).ids,
};
const ms: Record<keyof typeof runs, number[]> = { full: [], perToken: [], gpu: [] };
const tokens = new Set<string>();
for (let r = 0; r <= reps; r++) { // the first round warms the pipelines up
  for (const [name, run] of Object.entries(runs) as [keyof typeof runs, (n: number) => Promise<number[]>][]) {
    const t0 = performance.now();
    tokens.add((await run(newTokens)).join());
    if (r > 0) ms[name].push((performance.now() - t0) / newTokens);
  }
}
// several prompts: one after another, or as one batch
const prompts = Array.from({ length: 8 }, (_, r) => prompt.slice(0, promptTokens - 4 * r));
const several = { sequential: [] as number[], batched: [] as number[] };
const sameRows = new Set<string>();
for (let r = 0; r <= reps; r++) {
  let t0 = performance.now();
  const one = [];
  for (const p of prompts) {
    one.push((await generate(model, tokenizer, p, { maxNewTokens: newTokens, stopAtEos: false })).ids.join());
  }
  const a = (performance.now() - t0) / (newTokens * prompts.length);
  t0 = performance.now();
  const all = await generateBatch(model, tokenizer, prompts, { maxNewTokens: newTokens, stopAtEos: false });
  const b = (performance.now() - t0) / (newTokens * prompts.length);
  sameRows.add(one.join("|")).add(all.map((g) => g.ids.join()).join("|"));
  if (r > 0) [several.sequential.push(a), several.batched.push(b)];
}
// one cached token at a time: where its time goes
const cache = model.newCache!();
const pass = (ids: number[]) => {
  const host = Int32Array.from(ids);
  const batch = { inputIds: Tensor.from(gpu, host, [1, host.length]), inputIdsHost: host };
  return tidy(() =>
    noGrad(() => ({ v: model.forward(batch, { lastLogits: true, cache }).logits.readLater() }))
  ).v;
};
const prefill = pass(prompt);
gpu.stream.flush();
await prefill;
const split = { record: [] as number[], submit: [] as number[], wait: [] as number[] };
const d0 = gpu.stream.dispatches, steps = Math.min(newTokens, maxTokens(model.config) - promptTokens);
for (let i = 0; i < steps; i++) {
  let t0 = performance.now();
  const p = pass([prompt[i % prompt.length]]);
  split.record.push(performance.now() - t0);
  t0 = performance.now();
  gpu.stream.flush();
  split.submit.push(performance.now() - t0);
  t0 = performance.now();
  await p;
  split.wait.push(performance.now() - t0);
}
const dispatches = (gpu.stream.dispatches - d0) / steps;
cache.dispose();
const bare: number[] = [];
for (let i = 0; i < 10; i++) {
  const x = Tensor.from(gpu, new Float32Array(1), [1]);
  const t0 = performance.now();
  const p = x.readLater();
  gpu.stream.flush();
  await p;
  bare.push(performance.now() - t0);
  x.dispose();
}
// sampled generation: with a top-k the GPU draws, 16 tokens per readback; without, the CPU, a readback each
const sampled = { gpu: [] as number[], cpu: [] as number[] };
for (let r = 0; r <= reps; r++) {
  for (const [where, topK] of [["gpu", 50], ["cpu", 0]] as const) {
    const t0 = performance.now();
    const opts = { maxNewTokens: newTokens, stopAtEos: false, temperature: 0.8, topK, topP: 0.95, seed: r };
    await generate(model, tokenizer, prompt, opts);
    if (r > 0) sampled[where].push((performance.now() - t0) / newTokens);
  }
}

model.dispose();
const full = median(ms.full);
const row = (
  what: string,
  xs: number[],
) => [what, median(xs).toFixed(2), `${(median(xs) / full).toFixed(2)}×`];
console.log(`${v.model}: ${promptTokens}-token prompt, ${newTokens} new tokens, ${gpu.description}`);
console.log(table(["greedy generation", "ms/token", "vs full passes"], [
  row("full pass per token", ms.full),
  row("cache, a readback per token", ms.perToken),
  row("cache, 16 tokens per readback", ms.gpu),
]));
console.log(tokens.size === 1 ? "the same tokens" : "DIFFERENT TOKENS");
const seq = median(several.sequential);
console.log(table(["8 prompts of 36–64 tokens", "ms/token", "vs one by one"], [
  ["one after another", seq.toFixed(2), "1.00×"],
  ["generateBatch", median(several.batched).toFixed(2), `${(median(several.batched) / seq).toFixed(2)}×`],
]));
console.log(sameRows.size === 1 ? "the same tokens" : "DIFFERENT TOKENS");
console.log(
  table(["one cached token", "dispatches", "record ms", "submit ms", "wait ms", "bare readback ms"], [[
    "",
    dispatches.toFixed(0),
    median(split.record).toFixed(2),
    median(split.submit).toFixed(2),
    median(split.wait).toFixed(2),
    median(bare).toFixed(2),
  ]]),
);
const sampleRng = new Prng(1);
const gauss = () =>
  Math.sqrt(-2 * Math.log(1 - sampleRng.uniform())) * Math.cos(2 * Math.PI * sampleRng.uniform());
const wide = Float32Array.from({ length: 151936 }, () => 3 * gauss());
const sampling: string[][] =
  ([["top-p 0.9", 0, 0.9], ["top-k 50", 50, 1], ["top-k 50, top-p 0.9", 50, 0.9], ["neither", 0, 1]] as const)
    .map(([what, k, p]) => {
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) {
        sampleToken(wide, { temperature: 0.7, topK: k, topP: p, minP: 0 }, sampleRng);
      }
      return [what, ((performance.now() - t0) / 20).toFixed(1)];
    });
// the GPU's draw over the same logits (one workgroup a row; 5 draws per submit, their mean)
const onGpu = Tensor.from(gpu, wide, [1, wide.length]), picked = Tensor.empty(gpu, [5], "i32");
for (const k of [20, 50]) {
  const draws = async () => {
    for (let step = 0; step < 5; step++) {
      sampleTokens(onGpu, { temperature: 0.7, topK: k, topP: 0.9, minP: 0, seed: 1, step }, picked, step);
    }
    await picked.toInt32Array();
  };
  await draws(); // compiles
  const t0 = performance.now();
  await draws();
  sampling.push([`top-k ${k}, top-p 0.9 on the GPU`, ((performance.now() - t0) / 5).toFixed(1)]);
}
console.log(table(["sampling 151,936 logits", "ms/token"], sampling));
console.log(table(["sampled, temperature 0.8, top-p 0.95", "ms/token"], [
  ["top-k 50: drawn on the GPU, 16 per readback", median(sampled.gpu).toFixed(2)],
  ["no top-k: drawn on the CPU, a readback each", median(sampled.cpu).toFixed(2)],
]));
