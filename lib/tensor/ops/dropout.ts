/**
 * Seeded dropout: the keep mask is a hash of (seed, step, site, element index), so it is
 * reproducible and the backward pass regenerates it instead of storing it.
 * @module
 */
import { dropoutKernel, pcgHash } from "../../../kernels/elementwise.ts";
import { record } from "../autograd.ts";
import { Tensor } from "../tensor.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";

/** Where a dropout mask comes from: the run's seed, the training step, and the call site. */
export interface DropoutKey {
  seed: number;
  step: number;
  /** Distinguishes dropout layers within one step (e.g. layer index · 4 + which). */
  site?: number;
}

/** The u32 key of a mask (shared by the kernel and the CPU reference). */
export function dropoutMaskKey(key: DropoutKey): number {
  return pcgHash((key.seed >>> 0) ^ pcgHash((key.step >>> 0) ^ pcgHash((key.site ?? 0) >>> 0)));
}

/** The u32 threshold below which a hash drops its element: round(p · 2³²). */
export function dropoutThreshold(p: number): number {
  return Math.min(4294967295, Math.round(p * 4294967296));
}

/**
 * Zero each element with probability `p` and scale the rest by 1/(1−p). Identity (returns
 * `x`) when p = 0; call it only in training.
 */
export function dropout(x: Tensor, p: number, key: DropoutKey): Tensor {
  expectDtype("dropout", "f32", x);
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: probability ${p} is outside [0, 1]`);
  if (p === 0) return x;
  const x4 = x.size % 4 === 0;
  const n = x4 ? x.size / 4 : x.size;
  const params = u32s(n, dropoutMaskKey(key), dropoutThreshold(p), f(p === 1 ? 0 : 1 / (1 - p)));
  const apply = (src: Tensor) => {
    const out = Tensor.empty(src.gpu, src.shape);
    launch(src.gpu, dropoutKernel(x4), [src.buffer, out.buffer], n, params);
    return out;
  };
  return record("dropout", apply(x), [x], [], (g) => [apply(g)]);
}
