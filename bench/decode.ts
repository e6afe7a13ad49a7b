/**
 * Greedy decoding of a bench model with random weights (bench/models.ts): a prompt through the
 * key/value cache, then one token at a time, each picked on the GPU and fed to the next pass, 16
 * between readbacks as `generate` does. Milliseconds per token (wall, and the CPU's recording of
 * the passes apart) for each weight storage and key/value cache, and with the few-row products
 * on the GEMV or on the `m8` tile. The storages take turns per round.
 *
 *     deno run -A bench/decode.ts                                   # llama-small on a CPU adapter
 *     deno run -A bench/decode.ts --model llama7b-layer --dtypes f16,q8,q4 --tokens 64 --reps 3
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { MATMUL_HEURISTICS } from "../lib/linalg/matmul_plan.ts";
import type { KvCacheDtype } from "../lib/models/kv_cache.ts";
import type { Model } from "../lib/models/model.ts";
import type { WeightDtype } from "../lib/nn/load.ts";
import { formatBytes } from "../lib/models/storage.ts";
import { argmax, noGrad, reshape, Tensor, tidy } from "../lib/tensor/mod.ts";
import { BENCH_MODELS, loadBenchModel } from "./models.ts";
import { median, table } from "./stats.ts";

const { values: v } = benchArgs(import.meta.url, {
  model: { type: "string", default: "llama-small" },
  dtypes: { type: "string", default: "f32,f16,q8,q4" },
  "prompt-tokens": { type: "string", default: "32" },
  tokens: { type: "string", default: "32" },
  reps: { type: "string", default: "2" },
});
const PER_READ = 16;
const bench = BENCH_MODELS[v.model!];
if (!bench) throw new Error(`--model: one of ${Object.keys(BENCH_MODELS).join(", ")}`);
const gpu = await getGpu();
const dtypes = v.dtypes!.split(",").filter((d) => d !== "f16" || gpu.f16) as WeightDtype[];
const promptTokens = Number(v["prompt-tokens"]), tokens = Number(v.tokens), reps = Number(v.reps);
console.log(
  `greedy decoding of ${bench.name} (random weights) on ${gpu.description}; ${new Date().toISOString()}`,
);

/** Wall and recording ms per token of `tokens` greedy tokens after the prompt, 16 per readback. */
async function decode(model: Model, cacheDtype: KvCacheDtype): Promise<{ wall: number; record: number }> {
  const vocab = "vocabSize" in model.config ? model.config.vocabSize : 1;
  const prompt = Int32Array.from({ length: promptTokens }, (_, i) => (i * 37 + 11) % vocab);
  const cache = model.newCache!(cacheDtype);
  try {
    let batch = { inputIds: Tensor.from(gpu, prompt, [1, promptTokens]), inputIdsHost: prompt };
    let record = 0;
    const t0 = performance.now();
    for (let made = 0; made < tokens; made += PER_READ) {
      const t1 = performance.now();
      const { last } = tidy(() =>
        noGrad(() => {
          let next: Tensor | null = null;
          for (let j = 0; j < Math.min(PER_READ, tokens - made); j++) {
            const logits = model.forward(batch, { lastLogits: true, cache }).logits;
            next = argmax(reshape(logits, [1, vocab]));
            batch = { inputIds: reshape(next, [1, 1]) } as typeof batch;
          }
          return { last: next!.readLater() };
        })
      );
      record += performance.now() - t1;
      gpu.stream.flush();
      const id = (await last)[0];
      batch = { inputIds: Tensor.from(gpu, Int32Array.of(id), [1, 1]), inputIdsHost: Int32Array.of(id) };
    }
    return { wall: (performance.now() - t0) / tokens, record: record / tokens };
  } finally {
    cache.dispose();
  }
}

const variants = dtypes.flatMap((dtype) => [
  { dtype, cache: "f32" as KvCacheDtype, gemv: true },
  ...(dtype !== "f32" && gpu.f16 ? [{ dtype, cache: "f16" as KvCacheDtype, gemv: true }] : []),
  { dtype, cache: "f32" as KvCacheDtype, gemv: false },
]);
const models = new Map<WeightDtype, Model>();
for (const dtype of dtypes) models.set(dtype, await loadBenchModel(gpu, bench, dtype));
const times = variants.map(() => ({ wall: [] as number[], record: [] as number[] }));
for (let r = 0; r <= reps; r++) { // the first round compiles and warms up
  for (const [i, x] of variants.entries()) {
    MATMUL_HEURISTICS.gemvRows = x.gemv ? 8 : 0;
    const t = await decode(models.get(x.dtype)!, x.cache);
    if (r > 0) [times[i].wall.push(t.wall), times[i].record.push(t.record)];
  }
}
MATMUL_HEURISTICS.gemvRows = 8;
const weights = (dtype: WeightDtype) =>
  formatBytes([...models.get(dtype)!.parameters.values()].reduce((s, t) => s + t.bytes, 0));
console.log(table(
  ["weights", "bytes", "kv cache", "few-row products", "ms/token", "record ms/token"],
  variants.map((x, i) => [
    x.dtype,
    weights(x.dtype),
    x.cache,
    x.gemv ? "gemv" : "m8 tile",
    median(times[i].wall).toFixed(2),
    median(times[i].record).toFixed(2),
  ]),
));
for (const m of models.values()) m.dispose();
