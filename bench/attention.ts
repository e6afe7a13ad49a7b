/**
 * Attention forward alone and forward + backward (q, k, v need their gradients), fused against
 * materialised probabilities, side by side: GPU milliseconds (median, the paths taking turns)
 * and the peak memory one training call adds. The data behind `ATTENTION_PATH.fuseFromBytes`
 * (lib/tensor/ops/attention_fused.ts).
 *
 *     deno run -A bench/attention.ts [--reps=10] [--long]   # --long: 1024–2048 tokens at batch 1
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import { table, timeEncodeEach, uniformValues } from "./stats.ts";

/** One attention call's sizes (q [B, T, H, D] as the projections give them). */
interface Case {
  what: string;
  b: number;
  h: number;
  hkv: number;
  t: number;
  d: number;
  causal: boolean;
  dropout: number;
}

const GPU_CASES: Case[] = [
  { what: "roberta-base train", b: 32, h: 12, hkv: 12, t: 128, d: 64, causal: false, dropout: 0.1 },
  { what: "gpt2 1024 tokens", b: 8, h: 12, hkv: 12, t: 1024, d: 64, causal: true, dropout: 0.1 },
  { what: "llama layer bench", b: 4, h: 32, hkv: 32, t: 512, d: 128, causal: true, dropout: 0 },
  { what: "llama 4096 tokens", b: 1, h: 32, hkv: 8, t: 4096, d: 128, causal: true, dropout: 0 },
];

const SMALL_CASES: Case[] = [
  { what: "demo train", b: 16, h: 2, hkv: 2, t: 32, d: 32, causal: false, dropout: 0.1 },
  { what: "encoder 128 tokens", b: 4, h: 4, hkv: 4, t: 128, d: 32, causal: false, dropout: 0.1 },
  { what: "decoder 512 tokens", b: 1, h: 4, hkv: 2, t: 512, d: 64, causal: true, dropout: 0 },
];

/** Long causal sequences at batch 1 for software adapters (minutes on lavapipe): where the paths cross. */
const LONG_CASES: Case[] = [
  { what: "decoder 1024, D = 16", b: 1, h: 8, hkv: 2, t: 1024, d: 16, causal: true, dropout: 0 },
  { what: "decoder 2048, D = 16", b: 1, h: 8, hkv: 2, t: 2048, d: 16, causal: true, dropout: 0 },
  { what: "decoder 1024, D = 64", b: 1, h: 4, hkv: 2, t: 1024, d: 64, causal: true, dropout: 0 },
];

const { values } = benchArgs(import.meta.url, { reps: { type: "string" }, long: { type: "boolean" } });
const reps = Number(values.reps ?? 10);
const gpu = await getGpu();
console.log(`attention fwd+bwd, fused vs materialised, on ${gpu.description}; ${new Date().toISOString()}`);

/** Leaves q, k, v in [B, T, H, D] and the output's gradient. */
function operands(gpu: Gpu, c: Case) {
  const leaf = (heads: number, seed: number) => {
    const x = T.Tensor.from(gpu, uniformValues(c.b * c.t * heads * c.d, 1, seed), [c.b, c.t, heads, c.d]);
    x.requiresGrad = true;
    return T.keep(x);
  };
  const g = T.keep(T.Tensor.from(gpu, uniformValues(c.b * c.t * c.h * c.d, 1, 4), [c.b, c.t, c.h, c.d]));
  return { q: leaf(c.h, 1), k: leaf(c.hkv, 2), v: leaf(c.hkv, 3), g };
}

const rows: string[][] = [];
for (const c of values.long ? LONG_CASES : gpu.software ? SMALL_CASES : GPU_CASES) {
  const { q, k, v, g } = operands(gpu, c);
  const run = (path: T.AttentionPath) =>
    T.attention(q, k, v, {
      layout: "bthd",
      causal: c.causal,
      probsDropout: c.dropout > 0 ? { p: c.dropout, key: { seed: 1, step: 1 } } : null,
      path,
    });
  // forward alone (evaluation: no tape), and forward + backward (training)
  const forward = (path: T.AttentionPath) => () => T.noGrad(() => T.tidy(() => void run(path)));
  const step = (path: T.AttentionPath) => () =>
    T.tidy(() => {
      run(path).backward(g);
      for (const x of [q, k, v]) {
        x.grad?.dispose();
        x.grad = null;
      }
    });
  const peak = async (path: T.AttentionPath) => {
    await gpu.sync();
    gpu.pool.trim();
    gpu.pool.resetPeak();
    const base = gpu.pool.stats().allocated;
    step(path)();
    await gpu.sync();
    return gpu.pool.stats().peak - base;
  };
  // probabilities the device cannot bind whole (2 GiB at LLaMA's 4096 tokens on an H100) have
  // the fused path alone
  const both = c.b * c.h * c.t * c.t * 4 <= gpu.limits.maxStorageBufferBindingSize;
  const paths: T.AttentionPath[] = both ? ["materialized", "fused"] : ["fused"];
  const memory = [];
  for (const path of paths) memory.push(await peak(path));
  const times = await timeEncodeEach(gpu, [...paths.map(forward), ...paths.map(step)], reps);
  const [fwdMat, fwdFused, mat, fused] = both ? times : [NaN, times[0], NaN, times[1]];
  const [memMat, memFused] = both ? memory : [NaN, memory[0]];
  const ms = (x: number) => Number.isNaN(x) ? "—" : x.toFixed(3);
  const ratio = (x: number, y: number) => Number.isNaN(y) ? "—" : `${(x / y).toFixed(2)}×`;
  const mib = (bytes: number) => Number.isNaN(bytes) ? "—" : (bytes / 2 ** 20).toFixed(1);
  rows.push([
    c.what,
    `${c.b}×${c.h}/${c.hkv}×${c.t}×${c.d}${c.causal ? " causal" : ""}${c.dropout ? " drop" : ""}`,
    ms(fwdMat),
    ms(fwdFused),
    ratio(fwdFused, fwdMat),
    ms(mat),
    ms(fused),
    ratio(fused, mat),
    mib(memMat),
    mib(memFused),
  ]);
  console.log(rows.at(-1)!.join("  "));
  for (const x of [q, k, v, g]) x.dispose();
}
console.log(table(
  [
    "case",
    "B×H/Hkv×T×D",
    "fwd mat. ms",
    "fwd fused ms",
    "fused / mat.",
    "fwd+bwd mat. ms",
    "fwd+bwd fused ms",
    "fused / mat.",
    "mat. peak MiB",
    "fused peak MiB",
  ],
  rows,
));
