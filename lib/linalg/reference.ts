/**
 * Float64 CPU reference of {@link encodeMatmul} (tests and tools).
 * @module
 */
import type { MatrixLayout } from "./matmul_plan.ts";

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

/** Element offset of matrix z of an operand placed as `layout` (defaults: packed `size` apart). */
function matrixStart(layout: MatrixLayout | undefined, z: number, heads: number, size: number): number {
  const outer = Math.floor(z / heads), head = z % heads;
  return (layout?.offset ?? 0) + outer * (layout?.batchStride ?? heads * size) +
    Math.floor(head / (layout?.headGroup ?? 1)) * (layout?.headStride ?? size);
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
  const out = new Float64Array((opts.batch ?? 1) * m * n);
  if (opts.accumulate) out.set(opts.accumulate);
  return matmulReferenceInto(a, b, out, m, n, k, { ...opts, accumulate: !!opts.accumulate });
}

/**
 * {@link matmulReference} with the placements of `encodeMatmul` (`heads`, `layoutA/B/C`):
 * writes op(A)·op(B) into `c` (the whole C buffer, adding to it with `accumulate`) and
 * returns `c`; elements outside C's matrices are left as they are.
 */
export function matmulReferenceInto(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  c: Float64Array,
  m: number,
  n: number,
  k: number,
  opts: Omit<MatmulReferenceOptions, "accumulate"> & {
    accumulate?: boolean;
    heads?: number;
    layoutA?: MatrixLayout;
    layoutB?: MatrixLayout;
    layoutC?: MatrixLayout;
  } = {},
): Float64Array {
  const batch = opts.batch ?? 1, heads = opts.heads ?? 1;
  const alpha = opts.alpha ?? 1;
  const lda = opts.layoutA?.ld ?? (opts.transA ? m : k);
  const ldb = opts.layoutB?.ld ?? (opts.transB ? k : n);
  const ldc = opts.layoutC?.ld ?? n;
  for (let z = 0; z < batch; z++) {
    const ao = matrixStart(opts.layoutA, z, heads, m * k);
    const bo = matrixStart(opts.layoutB, z, heads, opts.broadcastB ? 0 : k * n);
    const co = matrixStart(opts.layoutC, z, heads, m * n);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let l = 0; l < k; l++) {
          const av = opts.transA ? a[ao + l * lda + i] : a[ao + i * lda + l];
          const bv = opts.transB ? b[bo + j * ldb + l] : b[bo + l * ldb + j];
          s += av * bv;
        }
        let v = alpha * s;
        if (opts.bias) v += opts.bias[j];
        const at = co + i * ldc + j;
        c[at] = opts.accumulate ? c[at] + v : v;
      }
    }
  }
  return c;
}
