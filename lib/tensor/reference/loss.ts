/**
 * Float64 cross-entropy with an ignore index, forward and gradient.
 * @module
 */

/**
 * Mean (over counted targets; 0 when none) or summed `lse − x[target]` over rows of `v` logits,
 * as `log Σ exp(x − max) − (x[target] − max)` (exact however large the logits).
 */
export function crossEntropyForward(
  x: Float64Array,
  v: number,
  targets: Int32Array,
  ignore = -100,
  mean = true,
): number {
  let total = 0, count = 0;
  targets.forEach((t, r) => {
    if (t === ignore) return;
    const row = x.subarray(r * v, (r + 1) * v);
    const mx = Math.max(...row);
    total += Math.log(row.reduce((a, z) => a + Math.exp(z - mx), 0)) - (row[t] - mx);
    count++;
  });
  return mean ? (count > 0 ? total / count : 0) : total;
}

/** Gradient of `gy · loss` with respect to the logits. */
export function crossEntropyBackward(
  x: Float64Array,
  v: number,
  targets: Int32Array,
  gy: number,
  ignore = -100,
  mean = true,
): Float64Array {
  const dx = new Float64Array(x.length);
  const count = targets.filter((t) => t !== ignore).length;
  const scale = mean ? (count > 0 ? gy / count : 0) : gy;
  targets.forEach((t, r) => {
    if (t === ignore) return;
    const row = x.subarray(r * v, (r + 1) * v);
    const mx = Math.max(...row);
    const sum = row.reduce((a, z) => a + Math.exp(z - mx), 0);
    for (let j = 0; j < v; j++) dx[r * v + j] = (Math.exp(row[j] - mx) / sum - (j === t ? 1 : 0)) * scale;
  });
  return dx;
}

/**
 * Mean binary cross-entropy of logits `x` against targets `y` in [0, 1] (torch's
 * BCEWithLogitsLoss, the multi-label loss), and its gradient `(σ(x) − y) / n`.
 */
export function bceWithLogits(x: Float64Array, y: Float64Array): { loss: number; grad: Float64Array } {
  let total = 0;
  const grad = new Float64Array(x.length);
  x.forEach((v, i) => {
    total += Math.max(v, 0) - v * y[i] + Math.log1p(Math.exp(-Math.abs(v)));
    grad[i] = (1 / (1 + Math.exp(-v)) - y[i]) / x.length;
  });
  return { loss: total / x.length, grad };
}
