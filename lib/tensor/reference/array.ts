/**
 * The float64 array the references compute on: data plus a row-major shape.
 * @module
 */
import { contiguousStrides, numel } from "../shape.ts";

/** A float64 row-major array. */
export interface Arr {
  shape: number[];
  data: Float64Array;
}

/** Wrap `data` (copied to f64) with `shape`. */
export function arr(data: ArrayLike<number>, shape: readonly number[]): Arr {
  if (data.length !== numel(shape)) throw new Error(`arr: ${data.length} values for shape [${shape}]`);
  return { shape: [...shape], data: Float64Array.from(data) };
}

/** An array of zeros. */
export function zeros(shape: readonly number[]): Arr {
  return { shape: [...shape], data: new Float64Array(numel(shape)) };
}

/** Apply `f` to every element. */
export function map(a: Arr, f: (v: number, i: number) => number): Arr {
  return { shape: [...a.shape], data: a.data.map(f) };
}

/** `f(a, b)` with NumPy broadcasting. */
export function broadcast(a: Arr, b: Arr, f: (x: number, y: number) => number): Arr {
  const rank = Math.max(a.shape.length, b.shape.length);
  const pad = (s: number[]) => [...new Array(rank - s.length).fill(1), ...s];
  const sa = pad(a.shape), sb = pad(b.shape);
  const shape = sa.map((d, i) => Math.max(d, sb[i]));
  const out = zeros(shape);
  const ta = contiguousStrides(sa), tb = contiguousStrides(sb);
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < out.data.length; i++) {
    let ia = 0, ib = 0;
    for (let d = 0; d < rank; d++) {
      if (sa[d] !== 1) ia += idx[d] * ta[d];
      if (sb[d] !== 1) ib += idx[d] * tb[d];
    }
    out.data[i] = f(a.data[ia], b.data[ib]);
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** Sum `a` down to `shape` (which broadcasts to `a.shape`). */
export function sumTo(a: Arr, shape: readonly number[]): Arr {
  const rank = a.shape.length;
  const target = [...new Array(rank - shape.length).fill(1), ...shape];
  const out = zeros(target);
  const to = contiguousStrides(target);
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < a.data.length; i++) {
    let o = 0;
    for (let d = 0; d < rank; d++) if (target[d] !== 1) o += idx[d] * to[d];
    out.data[o] += a.data[i];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < a.shape[d]) break;
      idx[d] = 0;
    }
  }
  return { shape: [...shape], data: out.data };
}

/** Sum over `axes` (dropped from the shape). */
export function sumAxes(a: Arr, axes: readonly number[]): Arr {
  const keep = a.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const s = sumTo(a, keep);
  return { shape: a.shape.filter((_, i) => !axes.includes(i)), data: s.data };
}

/** Permute dimensions (result dim i = input dim `dims[i]`). */
export function permute(a: Arr, dims: readonly number[]): Arr {
  const shape = dims.map((d) => a.shape[d]);
  const st = contiguousStrides(a.shape);
  const out = zeros(shape);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < out.data.length; i++) {
    let src = 0;
    for (let d = 0; d < shape.length; d++) src += idx[d] * st[dims[d]];
    out.data[i] = a.data[src];
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** Elements `lo..hi-1` along `axis`. */
export function slice(a: Arr, axis: number, lo: number, hi: number): Arr {
  const outer = numel(a.shape.slice(0, axis)), inner = numel(a.shape.slice(axis + 1));
  const n = a.shape[axis];
  const shape = a.shape.map((d, i) => (i === axis ? hi - lo : d));
  const out = zeros(shape);
  let k = 0;
  for (let o = 0; o < outer; o++) {
    for (let j = lo; j < hi; j++) {
      for (let i = 0; i < inner; i++) out.data[k++] = a.data[(o * n + j) * inner + i];
    }
  }
  return out;
}

/** Concatenate along `axis`. */
export function concat(parts: readonly Arr[], axis: number): Arr {
  const shape = parts[0].shape.map((d, i) => (i === axis ? parts.reduce((s, p) => s + p.shape[axis], 0) : d));
  const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1));
  const out = zeros(shape);
  let k = 0;
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const len = p.shape[axis] * inner;
      out.data.set(p.data.subarray(o * len, (o + 1) * len), k);
      k += len;
    }
  }
  return out;
}

/** The first index of the largest value of each row of a [..., n] (rows of finite values). */
export function argmaxRows(a: Arr): number[] {
  const n = a.shape[a.shape.length - 1], out: number[] = [];
  for (let r = 0; r * n < a.data.length; r++) {
    let best = 0;
    for (let j = 1; j < n; j++) if (a.data[r * n + j] > a.data[r * n + best]) best = j;
    out.push(best);
  }
  return out;
}
