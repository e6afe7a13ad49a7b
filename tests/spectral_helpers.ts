// Float64 references and inputs the spectral adapter tests share (adapter_op_test, bands_spectral_test).
import { coefGradReference, deltaWReference } from "../lib/spectral/adapter_op.ts";
import { Prng } from "../lib/spectral/prng.ts";
import type { Transform } from "../lib/spectral/transforms.ts";

/** `count` distinct positions, always including (0, 0), (M−1, N−1) and (1, 1) (mirror cases). */
export function testPositions(m: number, n: number, count: number, seed: number): Int32Array {
  const p = new Prng(seed);
  const flats = new Set<number>([0, (m - 1) * n + (n - 1), (1 % m) * n + (1 % n)]);
  while (flats.size < Math.min(count, m * n)) flats.add(p.below(m * n));
  return Int32Array.from([...flats].slice(0, count).flatMap((f) => [Math.floor(f / n), f % n]));
}

/** a (r×k) · bᵀ where b is (c×k): out r×c, float64. */
export function matmulT(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  r: number,
  k: number,
  c: number,
): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < c; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * k + t] * b[j * k + t];
      out[i * c + j] = s;
    }
  }
  return out;
}

/** The transpose of an r×c matrix, float64. */
export function transpose(a: ArrayLike<number>, r: number, c: number): Float64Array {
  return Float64Array.from({ length: r * c }, (_, i) => a[(i % r) * c + Math.floor(i / r)]);
}

/** The layer's float64 reference: y = x ΔWᵀ, dx = δ ΔW, ∂L/∂c from G = δᵀ x, for `tokens` rows. */
export function spectralReference(
  positions: Int32Array,
  coef: ArrayLike<number>,
  m: number,
  n: number,
  transform: Transform,
  alpha: number,
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  tokens: number,
): { dw: Float64Array; y: Float64Array; dx: Float64Array; g: Float64Array; dc: Float64Array } {
  const dw = deltaWReference(positions, coef, m, n, transform, alpha);
  const y = matmulT(x, dw, tokens, n, m);
  const dx = matmulT(dy, transpose(dw, m, n), tokens, m, n);
  const g = matmulT(transpose(dy, tokens, m), transpose(x, tokens, n), m, tokens, n);
  return { dw, y, dx, g, dc: coefGradReference(positions, g, m, n, transform, alpha) };
}
