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
 * Median milliseconds of `encode()` over `reps` repetitions, each between two GPU
 * timestamps, after one warm-up run that compiles the pipelines.
 */
export async function timeEncode(gpu: Gpu, encode: () => void, reps = 10): Promise<number> {
  encode();
  await gpu.sync();
  const timer = new GpuTimer(gpu, reps + 1);
  await timer.mark();
  for (let r = 0; r < reps; r++) {
    encode();
    await timer.mark();
  }
  return median(await timer.read());
}

/** Rows of cells as an aligned text table, header first. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows].map((row) => row.map((c, i) => c.padEnd(widths[i])).join("  ")).join("\n");
}
