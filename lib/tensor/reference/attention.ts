/**
 * Float64 masked softmax, attention (grouped-query heads, causal and padding masks) and
 * rotary embeddings, forward and analytic backward.
 * @module
 */

/** Attention problem sizes and masks. q [B,H,T,D], k [B,Hkv,S,D], v [B,Hkv,S,Dv]. */
export interface AttnDims {
  b: number;
  h: number;
  hkv: number;
  t: number;
  s: number;
  d: number;
  dv: number;
  causal: boolean;
  /** With causal: keys a query sees at most (sliding window). */
  window?: number;
  /** [B, S], 0 hides a key. */
  mask: Int32Array | null;
  scale: number;
  /** [B, H, T, S] factors applied to the probabilities before the product with v (dropout). */
  probsFactor?: Float64Array;
}

/** Whether query i of batch entry bi may see key j. */
function allowed(a: AttnDims, bi: number, i: number, j: number): boolean {
  const at = i + a.s - a.t; // the query's position among the keys
  return (!a.causal || (j <= at && at - j < (a.window ?? Infinity))) &&
    (!a.mask || a.mask[bi * a.s + j] !== 0);
}

/** Softmax of `scale·x` over each row of `s` with `keep(row, j)` masking; masked → 0. */
export function softmaxRows(
  x: Float64Array,
  s: number,
  scale: number,
  keep: (row: number, j: number) => boolean = () => true,
): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / s; r++) {
    let mx = -Infinity;
    for (let j = 0; j < s; j++) if (keep(r, j)) mx = Math.max(mx, scale * x[r * s + j]);
    let sum = 0;
    for (let j = 0; j < s; j++) if (keep(r, j)) sum += Math.exp(scale * x[r * s + j] - mx);
    for (let j = 0; j < s; j++) y[r * s + j] = keep(r, j) ? Math.exp(scale * x[r * s + j] - mx) / sum : 0;
  }
  return y;
}

/** Gradient of the row softmax: `scale · y · (dy − Σ y·dy)`. */
export function softmaxRowsBackward(
  y: Float64Array,
  dy: Float64Array,
  s: number,
  scale: number,
): Float64Array {
  const dx = new Float64Array(y.length);
  for (let r = 0; r < y.length / s; r++) {
    let dot = 0;
    for (let j = 0; j < s; j++) dot += y[r * s + j] * dy[r * s + j];
    for (let j = 0; j < s; j++) dx[r * s + j] = scale * y[r * s + j] * (dy[r * s + j] - dot);
  }
  return dx;
}

/** Attention probabilities [B, H, T, S] (before `probsFactor`). */
function probs(a: AttnDims, q: Float64Array, k: Float64Array): Float64Array {
  const p = new Float64Array(a.b * a.h * a.t * a.s);
  const g = a.h / a.hkv;
  for (let bi = 0; bi < a.b; bi++) {
    for (let hi = 0; hi < a.h; hi++) {
      const kh = Math.floor(hi / g);
      const qo = (bi * a.h + hi) * a.t * a.d, ko = (bi * a.hkv + kh) * a.s * a.d;
      const scores = new Float64Array(a.t * a.s);
      for (let i = 0; i < a.t; i++) {
        for (let j = 0; j < a.s; j++) {
          let dot = 0;
          for (let e = 0; e < a.d; e++) dot += q[qo + i * a.d + e] * k[ko + j * a.d + e];
          scores[i * a.s + j] = dot;
        }
      }
      p.set(softmaxRows(scores, a.s, a.scale, (i, j) => allowed(a, bi, i, j)), (bi * a.h + hi) * a.t * a.s);
    }
  }
  return p;
}

/** Attention output [B, H, T, Dv]. */
export function attentionForward(
  a: AttnDims,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
): Float64Array {
  const p = probs(a, q, k).map((x, i) => x * (a.probsFactor?.[i] ?? 1));
  const out = new Float64Array(a.b * a.h * a.t * a.dv);
  const g = a.h / a.hkv;
  for (let bi = 0; bi < a.b; bi++) {
    for (let hi = 0; hi < a.h; hi++) {
      const vo = (bi * a.hkv + Math.floor(hi / g)) * a.s * a.dv, po = (bi * a.h + hi) * a.t * a.s;
      for (let i = 0; i < a.t; i++) {
        for (let e = 0; e < a.dv; e++) {
          let acc = 0;
          for (let j = 0; j < a.s; j++) acc += p[po + i * a.s + j] * v[vo + j * a.dv + e];
          out[((bi * a.h + hi) * a.t + i) * a.dv + e] = acc;
        }
      }
    }
  }
  return out;
}

/** Gradients of Σ dO·O with respect to q, k, v. */
export function attentionBackward(
  a: AttnDims,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  dO: Float64Array,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const p = probs(a, q, k);
  const factor = (i: number) => a.probsFactor?.[i] ?? 1;
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  const g = a.h / a.hkv;
  for (let bi = 0; bi < a.b; bi++) {
    for (let hi = 0; hi < a.h; hi++) {
      const kh = Math.floor(hi / g);
      const qo = (bi * a.h + hi) * a.t * a.d, ko = (bi * a.hkv + kh) * a.s * a.d;
      const vo = (bi * a.hkv + kh) * a.s * a.dv, po = (bi * a.h + hi) * a.t * a.s;
      const oo = (bi * a.h + hi) * a.t * a.dv;
      const dp = new Float64Array(a.t * a.s);
      for (let i = 0; i < a.t; i++) {
        for (let j = 0; j < a.s; j++) {
          let acc = 0;
          for (let e = 0; e < a.dv; e++) {
            acc += dO[oo + i * a.dv + e] * v[vo + j * a.dv + e];
            dv[vo + j * a.dv + e] += factor(po + i * a.s + j) * p[po + i * a.s + j] * dO[oo + i * a.dv + e];
          }
          dp[i * a.s + j] = factor(po + i * a.s + j) * acc;
        }
      }
      const ds = softmaxRowsBackward(p.subarray(po, po + a.t * a.s), dp, a.s, a.scale);
      for (let i = 0; i < a.t; i++) {
        for (let j = 0; j < a.s; j++) {
          const w = ds[i * a.s + j];
          for (let e = 0; e < a.d; e++) {
            dq[qo + i * a.d + e] += w * k[ko + j * a.d + e];
            dk[ko + j * a.d + e] += w * q[qo + i * a.d + e];
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}

/**
 * HF rotate_half rotary embedding of x [B, H, T, D] ("bhtd") or [B, T, H, D] ("bthd") with
 * tables cos/sin [≥T, rd/2]; `sign = −1` is the inverse rotation (the gradient).
 */
export function ropeForward(
  x: Float64Array,
  shape: readonly number[],
  cos: ArrayLike<number>,
  sin: ArrayLike<number>,
  rd: number,
  layout: "bhtd" | "bthd",
  sign = 1,
): Float64Array {
  const [, a, c, d] = shape;
  const half = rd / 2;
  const y = new Float64Array(x.length);
  for (let row = 0; row < x.length / d; row++) {
    const pos = layout === "bhtd" ? row % c : Math.floor(row / c) % a;
    for (let j = 0; j < d; j++) {
      const i = row * d + j;
      if (j >= rd) {
        y[i] = x[i];
        continue;
      }
      const cs = cos[pos * half + (j % half)], sn = sign * sin[pos * half + (j % half)];
      y[i] = j < half ? x[i] * cs - x[i + half] * sn : x[i] * cs + x[i - half] * sn;
    }
  }
  return y;
}
