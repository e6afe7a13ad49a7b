/**
 * Float64 CPU references for the spectral transforms, straight from the definitions (no fast
 * algorithm, none of the identities the GPU path relies on), for tests and parity tools.
 * Matrices are row-major `m × n`, logical (out, in). Angles use exact integer phases
 * `(u·i) mod m`, so the tables are as accurate as float64 allows.
 * @module
 */

/** The 2-D transforms of SPEC §1.2. */
export type ReferenceTransform = "dht" | "dht2d" | "dft";

/** cos and sin of 2π·m/n for m < n. */
function circle(n: number): { cos: Float64Array; sin: Float64Array } {
  const cos = new Float64Array(n), sin = new Float64Array(n);
  for (let m = 0; m < n; m++) {
    cos[m] = Math.cos(2 * Math.PI * m / n);
    sin[m] = Math.sin(2 * Math.PI * m / n);
  }
  return { cos, sin };
}

/** `y[r, k] = Σ_j x[r, j]·cas(2πjk/n)` for each of `rows` rows (naive, O(rows·n²)). */
export function dhtRowsRef(x: ArrayLike<number>, rows: number, n: number): Float64Array {
  checkShape(x, rows, n);
  const { cos, sin } = circle(n);
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < n; k++) {
      let acc = 0;
      for (let j = 0, m = 0; j < n; j++, m = m + k >= n ? m + k - n : m + k) {
        acc += x[r * n + j] * (cos[m] + sin[m]);
      }
      y[r * n + k] = acc;
    }
  }
  return y;
}

/** `C_m X C_n` (the separable 2-D DHT), as the two matrix products of its definition. */
export function dhtRef(x: ArrayLike<number>, m: number, n: number): Float64Array {
  checkShape(x, m, n);
  const rowsDone = dhtRowsRef(x, m, n);
  const { cos, sin } = circle(m);
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let u = 0; u < m; u++) {
      const p = (i * u) % m, c = cos[p] + sin[p];
      for (let j = 0; j < n; j++) y[i * n + j] += c * rowsDone[u * n + j];
    }
  }
  return y;
}

/**
 * `E[i, j] = Σ_{u,v} x[u, v]·exp(+2πi(ui/m + vj/n))`, summed over v then over u; returns
 * (Re E, Im E). `Σ x·cas(θ) = Re E + Im E` and `Σ x·cos(θ) = Re E`.
 */
function expSum(x: ArrayLike<number>, m: number, n: number): { re: Float64Array; im: Float64Array } {
  const cn = circle(n), cm = circle(m);
  const tRe = new Float64Array(m * n), tIm = new Float64Array(m * n);
  for (let u = 0; u < m; u++) {
    for (let j = 0; j < n; j++) {
      let re = 0, im = 0;
      for (let v = 0; v < n; v++) {
        const p = (v * j) % n;
        re += x[u * n + v] * cn.cos[p];
        im += x[u * n + v] * cn.sin[p];
      }
      tRe[u * n + j] = re;
      tIm[u * n + j] = im;
    }
  }
  const re = new Float64Array(m * n), im = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let u = 0; u < m; u++) {
      const p = (u * i) % m, c = cm.cos[p], s = cm.sin[p];
      for (let j = 0; j < n; j++) {
        re[i * n + j] += c * tRe[u * n + j] - s * tIm[u * n + j];
        im[i * n + j] += s * tRe[u * n + j] + c * tIm[u * n + j];
      }
    }
  }
  return { re, im };
}

/** `Σ_{u,v} x[u, v]·cas(2π(ui/m + vj/n))` (the non-separable 2-D DHT). */
export function dht2dRef(x: ArrayLike<number>, m: number, n: number): Float64Array {
  checkShape(x, m, n);
  const { re, im } = expSum(x, m, n);
  return re.map((v, i) => v + im[i]);
}

/** `Σ_{u,v} x[u, v]·cos(2π(ui/m + vj/n))` = Re fft2(x). */
export function dftRef(x: ArrayLike<number>, m: number, n: number): Float64Array {
  checkShape(x, m, n);
  return expSum(x, m, n).re;
}

/** The reference of transform `kind` of the m × n matrix x. */
export function transformRef(
  kind: ReferenceTransform,
  x: ArrayLike<number>,
  m: number,
  n: number,
): Float64Array {
  switch (kind) {
    case "dht":
      return dhtRef(x, m, n);
    case "dht2d":
      return dht2dRef(x, m, n);
    case "dft":
      return dftRef(x, m, n);
  }
}

/** Relative L2 error ‖a − b‖/‖b‖ (‖a − b‖ when b is zero) and the largest absolute error. */
export function compareToReference(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
): { relL2: number; maxAbs: number } {
  if (actual.length !== expected.length) {
    throw new Error(`compare: ${actual.length} values against a reference of ${expected.length}`);
  }
  let num = 0, den = 0, maxAbs = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = actual[i] - expected[i];
    num += d * d;
    den += expected[i] * expected[i];
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  return { relL2: Math.sqrt(num) / (den > 0 ? Math.sqrt(den) : 1), maxAbs };
}

function checkShape(x: ArrayLike<number>, m: number, n: number): void {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 1 || n < 1 || x.length !== m * n) {
    throw new Error(`reference: expected ${m} × ${n} = ${m * n} values, got ${x.length}`);
  }
}
