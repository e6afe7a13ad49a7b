/**
 * The coefficient gradient of a square adapter (M = N) straight from x and δ, with the two
 * transforms done in workgroup memory (kernels/coef_grad.ts): two dispatches (the fused pass
 * and the per-coefficient sum) where the separate route takes four (FHT(x), FHT(δ) and the
 * gradient's two passes) and writes and reads back two T×N transforms. Square layers whose
 * lengths need Bluestein or do not fit workgroup memory, or with more entries than the
 * invocations can hold, keep the separate route.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { bindingLimit, clampedBinding, pairedRowBands, rowWindow } from "../gpu/bands.ts";
import { grid } from "../gpu/buffers.ts";
import type { Kernel } from "../gpu/pipelines.ts";
import type { Binding } from "../gpu/stream.ts";
import { fusedGradKernel } from "../../kernels/coef_grad.ts";
import { workgroupFhtLayout } from "./fht.ts";
import type { SparseSpectrum } from "./sparse.ts";

/** Tuning of the fused coefficient gradient (benchmarks switch it; see bench/layer.ts). */
export const COEF_GRAD_HEURISTICS: {
  /**
   * Take the fused route where it applies. Off: it was slower everywhere it was measured, the
   * folded layer by 5–20% on lavapipe (session 12) and a RoBERTa-base SSH step by 0.5 GPU ms on an
   * H200 (session 23; bench/RESULTS.md). It saves the two T×N transforms' memory traffic, which a
   * GPU short of bandwidth may value: `bench/step.ts --coef-grad=fused` measures it.
   */
  fused: boolean;
  /** Workgroups aimed at: each takes ⌈trips / chunks⌉ trips of P token pairs (partials: chunks × entries). */
  chunks: number;
  /** Elements transformed per workgroup trip aimed at (2P lines of n, as the FHT's workgroups). */
  elements: number;
  /** Most entries one invocation accumulates. */
  maxPerThread: number;
} = { fused: false, chunks: 512, elements: 2048, maxPerThread: 32 };

interface FusedPlan {
  readonly kernel: Kernel & { usesTwiddles: boolean };
  readonly tw: GPUBuffer;
  /** Token pairs per trip. */
  readonly pairs: number;
}

/** Plans by spectrum, then by the heuristics they were made under. */
const plans = new WeakMap<SparseSpectrum, Map<string, FusedPlan | null>>();
/** Generated kernels by their configuration (generated once each). */
const kernels = new Map<string, Kernel & { usesTwiddles: boolean }>();

function makePlan(gpu: Gpu, spectrum: SparseSpectrum): FusedPlan | null {
  const { m: n, n: nIn } = spectrum;
  const entries = spectrum.entries.length;
  if (n !== nIn || entries === 0) return null;
  const pairs = Math.max(1, Math.floor(COEF_GRAD_HEURISTICS.elements / (2 * n)));
  // each line unpacks into two Hartley rows kept in workgroup memory
  const found = workgroupFhtLayout(gpu, n, 2 * pairs, { reservePerLine: 2 * n, evenLines: true });
  if (!found) return null;
  const max = gpu.limits.maxComputeInvocationsPerWorkgroup;
  const want = Math.ceil(Math.ceil(entries / COEF_GRAD_HEURISTICS.maxPerThread) / 32) * 32;
  const threads = Math.min(max, Math.max(found.layout.threads, want));
  const perThread = Math.ceil(entries / threads);
  if (perThread > COEF_GRAD_HEURISTICS.maxPerThread) return null;
  const layout = { ...found.layout, threads };
  const config = { n, layout, perThread };
  const key = JSON.stringify(config);
  let kernel = kernels.get(key);
  if (!kernel) kernels.set(key, kernel = fusedGradKernel(config));
  return { kernel, tw: found.tw, pairs: layout.lines / 2 };
}

function planFor(gpu: Gpu, spectrum: SparseSpectrum): FusedPlan | null {
  let byKey = plans.get(spectrum);
  if (!byKey) plans.set(spectrum, byKey = new Map());
  const key = `${COEF_GRAD_HEURISTICS.elements},${COEF_GRAD_HEURISTICS.maxPerThread}`;
  let plan = byKey.get(key);
  if (plan === undefined) byKey.set(key, plan = makePlan(gpu, spectrum));
  return plan;
}

/** Whether {@link encodeFusedGrad} applies to `spectrum` on `gpu` (and the heuristics allow it). */
export function fusesGradient(gpu: Gpu, spectrum: SparseSpectrum): boolean {
  return COEF_GRAD_HEURISTICS.fused && planFor(gpu, spectrum) !== null;
}

/**
 * `dc[k] (+)= scale · Σ_{entries e of k} w_e · Σ_t FHT(δ)[t, u_e]·FHT(x)[t, v_e]` for x (T×N,
 * packed) and δ (T×N, rows `dyRows.ld` apart from element `dyRows.offset`, packed by default);
 * adds to `dc` when `accumulate`. Only where {@link fusesGradient} says so. Tokens over one
 * storage binding are taken in bands ({@link pairedRowBands}), each band's sums added to the last's.
 */
export function encodeFusedGrad(
  gpu: Gpu,
  spectrum: SparseSpectrum,
  x: GPUBuffer,
  dy: GPUBuffer,
  dc: GPUBuffer,
  tokens: number,
  scale: number,
  accumulate: boolean,
  dyRows?: { ld: number; offset: number },
): void {
  const plan = planFor(gpu, spectrum);
  if (!plan) {
    throw new Error(
      `fused coefficient gradient: not available for this ${spectrum.m}×${spectrum.n} spectrum`,
    );
  }
  const n = spectrum.n, ld = dyRows?.ld ?? n, offset = dyRows?.offset ?? 0;
  const fits = 4 * (offset + (tokens - 1) * ld + n) <= bindingLimit(gpu);
  const bands = fits
    ? [{ first: 0, rows: tokens }]
    : pairedRowBands(gpu, tokens, ld, `coefficient gradient of a ${n}×${n} adapter over ${tokens} tokens`);
  bands.forEach((band, i) => {
    const xs = rowWindow(gpu, band.first, band.rows, n);
    const dys = rowWindow(gpu, band.first, band.rows, ld, { offset });
    const inputs = {
      x: clampedBinding(gpu, x, xs),
      dy: clampedBinding(gpu, dy, dys),
      xOff: xs.base,
      dyOff: dys.base,
    };
    const partial = encodeTrips(gpu, spectrum, plan, inputs, band.rows, ld);
    spectrum.encodeGradReduce(partial.buffer, partial.chunks, dc, scale, i === 0 ? accumulate : true);
    gpu.pool.release(partial.buffer);
  });
}

/** The fused pass over `tokens` tokens of x and δ at their bindings: the partial sums (pooled) and their row count. */
function encodeTrips(
  gpu: Gpu,
  spectrum: SparseSpectrum,
  plan: FusedPlan,
  inputs: { x: Binding; dy: Binding; xOff: number; dyOff: number },
  tokens: number,
  ld: number,
): { buffer: GPUBuffer; chunks: number } {
  const entries = spectrum.entries.length;
  const trips = Math.ceil(tokens / (2 * plan.pairs));
  const per = Math.max(1, Math.ceil(trips / COEF_GRAD_HEURISTICS.chunks));
  const chunks = Math.ceil(trips / per);
  const partial = gpu.pool.acquire(chunks * entries * 4, undefined, "coef_grad.partial");
  const params = new Uint32Array([
    tokens,
    trips,
    per,
    chunks,
    spectrum.listOffset,
    entries,
    ld,
    inputs.dyOff,
    inputs.xOff,
  ]);
  const bufs = [spectrum.plan, inputs.dy, inputs.x, partial, ...(plan.kernel.usesTwiddles ? [plan.tw] : [])];
  gpu.stream.dispatch(plan.kernel, bufs, grid(gpu, chunks), params);
  return { buffer: partial, chunks };
}
