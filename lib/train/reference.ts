/**
 * Float64 references of the optimiser kernels (PyTorch's AdamW and clip_grad_norm_).
 * @module
 */

/** State of one parameter under the reference AdamW. */
export interface AdamWRefState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  steps: number;
}

/** One AdamW update of `s` in place with gradient `g` (already clipped). */
export function adamwReference(
  s: AdamWRefState,
  g: ArrayLike<number>,
  lr: number,
  weightDecay: number,
  [beta1, beta2]: readonly [number, number] = [0.9, 0.999],
  eps = 1e-8,
): void {
  s.steps++;
  const bc1 = 1 - beta1 ** s.steps, bc2 = 1 - beta2 ** s.steps;
  for (let i = 0; i < s.p.length; i++) {
    s.p[i] *= 1 - lr * weightDecay;
    s.m[i] = beta1 * s.m[i] + (1 - beta1) * g[i];
    s.v[i] = beta2 * s.v[i] + (1 - beta2) * g[i] * g[i];
    s.p[i] -= (lr / bc1) * s.m[i] / (Math.sqrt(s.v[i]) / Math.sqrt(bc2) + eps);
  }
}

/** The global L2 norm of `grads` and PyTorch's clip coefficient min(1, max/(norm + 1e-6)). */
export function clipReference(
  grads: readonly ArrayLike<number>[],
  maxNorm: number,
): { norm: number; scale: number } {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  const norm = Math.sqrt(s);
  return { norm, scale: Math.min(1, maxNorm / (norm + 1e-6)) };
}
