/**
 * Small helpers shared by the benchmarks: medians, timing repeated encodes, text tables.
 * @module
 */
import { type Gpu, GpuTimer } from "../lib/gpu/mod.ts";

/** The median of `xs`. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Run `encode` back to back for about `ms` milliseconds of wall clock, in growing batches per
 * submit. A GPU left idle drops its clocks and takes a few hundred ms of load to raise them
 * again (seen on the H100: the same 4096³ matmul took 25 ms cold and 4.5 ms warm), so every
 * timed measurement starts with this. The first call also compiles the pipelines.
 */
export async function warmUp(gpu: Gpu, encode: () => void, ms = 300): Promise<void> {
  const t0 = performance.now();
  for (let batch = 1; performance.now() - t0 < ms; batch = Math.min(2 * batch, 256)) {
    for (let i = 0; i < batch; i++) encode();
    await gpu.sync();
  }
}

/**
 * Median milliseconds of each of `encoders` over `reps` rounds, each run between two GPU
 * timestamps, after a {@link warmUp}. The encoders take turns within a round, so a drift of
 * the GPU's clock affects them alike and their ratios stay fair.
 */
export async function timeEncodeEach(gpu: Gpu, encoders: (() => void)[], reps = 10): Promise<number[]> {
  await warmUp(gpu, () => encoders.forEach((e) => e()));
  const timer = new GpuTimer(gpu, reps * encoders.length + 1);
  await timer.mark();
  for (let r = 0; r < reps; r++) {
    for (const e of encoders) {
      e();
      await timer.mark();
    }
  }
  const t = await timer.read();
  return encoders.map((_, i) => median(t.filter((_, j) => j % encoders.length === i)));
}

/** Median milliseconds of `encode()` over `reps` runs (see {@link timeEncodeEach}). */
export async function timeEncode(gpu: Gpu, encode: () => void, reps = 10): Promise<number> {
  return (await timeEncodeEach(gpu, [encode], reps))[0];
}

/**
 * `count` values uniform in (-√3·std, √3·std): a normal's variance from a seeded xorshift, at a
 * fraction of the cost of normals (benchmarks at 7B shapes fill gigabytes).
 */
export function uniformValues(count: number, std: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let s = (seed * 0x9e3779b1) | 1;
  const a = Math.sqrt(3) * std / 2 ** 31;
  for (let i = 0; i < count; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s * a;
  }
  return out;
}

/** Rows of cells as an aligned text table, header first. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows].map((row) => row.map((c, i) => c.padEnd(widths[i])).join("  ")).join("\n");
}
