/**
 * Float64 embedding lookup and its scatter-add gradient.
 * @module
 */

/** Rows of `w` [V, D] picked by `ids`. */
export function embeddingForward(w: Float64Array, d: number, ids: Int32Array): Float64Array {
  const y = new Float64Array(ids.length * d);
  ids.forEach((id, t) => y.set(w.subarray(id * d, (id + 1) * d), t * d));
  return y;
}

/** dW [V, D]: row `ids[t]` gathers g row t (skipping `paddingIdx`). */
export function embeddingBackward(
  vocab: number,
  d: number,
  ids: Int32Array,
  g: Float64Array,
  paddingIdx?: number,
): Float64Array {
  const dw = new Float64Array(vocab * d);
  ids.forEach((id, t) => {
    if (id === paddingIdx) return;
    for (let j = 0; j < d; j++) dw[id * d + j] += g[t * d + j];
  });
  return dw;
}
