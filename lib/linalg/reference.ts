/**
 * Float64 CPU reference of {@link encodeMatmul} (tests and tools).
 * @module
 */

/** The subset of the matmul options the reference needs (bias and initial C as arrays). */
export interface MatmulReferenceOptions {
  /** A stored (k, m). */
  transA?: boolean;
  /** B stored (n, k). */
  transB?: boolean;
  /** Number of matrices in A and C (and in B unless `broadcastB`). */
  batch?: number;
  /** One B for every batch entry. */
  broadcastB?: boolean;
  /** Added to every row of C. */
  bias?: ArrayLike<number>;
  /** Initial C (batch·m·n) that the product is added to. */
  accumulate?: ArrayLike<number>;
  /** Scale of the product. */
  alpha?: number;
}

/**
 * `C = alpha·op(A)·op(B) (+ bias) (+ C₀)` in float64, C (batch, m, n) row-major.
 */
export function matmulReference(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  n: number,
  k: number,
  opts: MatmulReferenceOptions = {},
): Float64Array {
  const batch = opts.batch ?? 1;
  const alpha = opts.alpha ?? 1;
  const out = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    const ao = z * m * k, bo = opts.broadcastB ? 0 : z * k * n, co = z * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let l = 0; l < k; l++) {
          const av = opts.transA ? a[ao + l * m + i] : a[ao + i * k + l];
          const bv = opts.transB ? b[bo + j * k + l] : b[bo + l * n + j];
          s += av * bv;
        }
        let v = alpha * s;
        if (opts.bias) v += opts.bias[j];
        if (opts.accumulate) v += opts.accumulate[co + i * n + j];
        out[co + i * n + j] = v;
      }
    }
  }
  return out;
}
