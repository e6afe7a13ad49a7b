/**
 * Float64 LayerNorm / RMSNorm over the last dimension, forward and analytic backward.
 * @module
 */
import type { Arr } from "./array.ts";

/** Forward: `rms` skips the mean; `bias` may be null. */
export function normForward(
  x: Arr,
  w: Float64Array,
  bias: Float64Array | null,
  eps: number,
  rms: boolean,
): Arr {
  const d = w.length, rows = x.data.length / d;
  const y = new Float64Array(x.data.length);
  for (let r = 0; r < rows; r++) {
    const row = x.data.subarray(r * d, (r + 1) * d);
    const mean = rms ? 0 : row.reduce((a, v) => a + v, 0) / d;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / d;
    const rstd = 1 / Math.sqrt(variance + eps);
    for (let j = 0; j < d; j++) y[r * d + j] = (row[j] - mean) * rstd * w[j] + (bias ? bias[j] : 0);
  }
  return { shape: [...x.shape], data: y };
}

/** Gradients of Σ g·y with respect to x, weight and bias. */
export function normBackward(
  x: Arr,
  w: Float64Array,
  g: Float64Array,
  eps: number,
  rms: boolean,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const d = w.length, rows = x.data.length / d;
  const dx = new Float64Array(x.data.length), dw = new Float64Array(d), db = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const row = x.data.subarray(r * d, (r + 1) * d), gr = g.subarray(r * d, (r + 1) * d);
    const mean = rms ? 0 : row.reduce((a, v) => a + v, 0) / d;
    const rstd = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mean) ** 2, 0) / d + eps);
    const xh = Float64Array.from(row, (v) => (v - mean) * rstd);
    let a = 0, c = 0;
    for (let j = 0; j < d; j++) {
      a += gr[j] * w[j];
      c += gr[j] * w[j] * xh[j];
      dw[j] += gr[j] * xh[j];
      db[j] += gr[j];
    }
    a = rms ? 0 : a / d;
    c /= d;
    for (let j = 0; j < d; j++) dx[r * d + j] = rstd * (gr[j] * w[j] - a - xh[j] * c);
  }
  return { dx, dw, db };
}
