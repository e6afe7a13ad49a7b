/**
 * Float64 activations and their derivatives (the CPU twins of kernels/elementwise.ts).
 * @module
 */

/** erf to ~1e-15: Maclaurin series below |x| = 3, Lentz continued fraction for erfc above. */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = x, sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(a) = exp(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
  let f = a, c = a, d = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    d = 1 / (a + an * d);
    c = a + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return x >= 0 ? 1 - erfc : erfc - 1;
}

const SQRT1_2 = Math.SQRT1_2;
const K = Math.sqrt(2 / Math.PI);

/** The activations by kernel name: value and derivative in float64. */
export const ACTIVATIONS: Record<string, { f: (x: number) => number; df: (x: number) => number }> = {
  exp: { f: Math.exp, df: Math.exp },
  log: { f: Math.log, df: (x) => 1 / x },
  log1p: { f: Math.log1p, df: (x) => 1 / (1 + x) },
  relu: { f: (x) => Math.max(x, 0), df: (x) => (x > 0 ? 1 : 0) },
  sigmoid: { f: sigmoid, df: (x) => sigmoid(x) * (1 - sigmoid(x)) },
  tanh: { f: Math.tanh, df: (x) => 1 - Math.tanh(x) ** 2 },
  silu: { f: (x) => x * sigmoid(x), df: (x) => sigmoid(x) * (1 + x * (1 - sigmoid(x))) },
  gelu: {
    f: (x) => 0.5 * x * (1 + erf(x * SQRT1_2)),
    df: (x) => 0.5 * (1 + erf(x * SQRT1_2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
  },
  gelu_tanh: {
    f: (x) => 0.5 * x * (1 + Math.tanh(K * (x + 0.044715 * x ** 3))),
    df: (x) => {
      const th = Math.tanh(K * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * K * (1 + 3 * 0.044715 * x * x);
    },
  },
};

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}
