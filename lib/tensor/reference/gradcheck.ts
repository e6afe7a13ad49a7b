/**
 * Central finite differences of float64 functions, to check the references' analytic
 * gradients.
 * @module
 */

/**
 * The gradient of `Σ_j w_j · f(x)_j` with respect to `x`, by central differences with step
 * `h` (float64: agrees with an analytic gradient to ~1e-8 for smooth `f`).
 */
export function numericGrad(
  f: (x: Float64Array) => ArrayLike<number>,
  x: Float64Array,
  w: ArrayLike<number>,
  h = 1e-6,
): Float64Array {
  const g = new Float64Array(x.length);
  const dot = (y: ArrayLike<number>) => {
    let s = 0;
    for (let j = 0; j < y.length; j++) s += w[j] * y[j];
    return s;
  };
  for (let i = 0; i < x.length; i++) {
    const keep = x[i];
    x[i] = keep + h;
    const up = dot(f(x));
    x[i] = keep - h;
    const down = dot(f(x));
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}
