/**
 * Layout ops and their gradient rules: reshape (a view), permute/transpose, slice, concat,
 * split, and dtype casts (not differentiable: f16 is frozen storage).
 * @module
 */
import { record } from "../autograd.ts";
import { contiguousStrides, fmt, normAxis, numel } from "../shape.ts";
import { type DType, isQuantized, Tensor } from "../tensor.ts";
import { padKernel } from "../../../kernels/layout.ts";
import { bandBinding, bindingLimit, type RowBand, rowBands } from "../../gpu/bands.ts";
import { stridedCopy } from "./copy.ts";
import { dequantizeInto } from "./quant.ts";
import { launch, u32s } from "./util.ts";

/** The same data with another shape (one dimension may be -1); shares storage. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((d) => d !== -1);
  const inferred = shape.length - known.length;
  if (inferred > 1) throw new Error(`reshape: at most one -1 allowed in ${fmt(shape)}`);
  const rest = numel(known);
  const full = inferred === 1
    ? shape.map((d) => (d === -1 ? (rest === 0 ? 0 : x.size / rest) : d))
    : [...shape];
  if (numel(full) !== x.size || full.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`reshape: cannot reshape ${x.describe()} to ${fmt(shape)}`);
  }
  const xs = x.shape;
  return record("reshape", x.view(full), [x], [], (g) => [g.view(xs)]);
}

/** Reorder the dimensions: result dimension i is input dimension `dims[i]`. Copies. */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const rank = x.shape.length;
  const order = dims.map((d) => normAxis(d, rank, "permute"));
  if (order.length !== rank || new Set(order).size !== rank) {
    throw new Error(`permute: ${JSON.stringify(dims)} is not a permutation of ${rank} dimensions`);
  }
  const shape = order.map((d) => x.shape[d]);
  const out = Tensor.empty(x.gpu, shape, x.dtype);
  const strides = contiguousStrides(x.shape);
  stridedCopy(x, out, shape, order.map((d) => strides[d]), contiguousStrides(shape));
  const inverse = new Array<number>(rank);
  order.forEach((d, i) => (inverse[d] = i));
  return record("permute", out, [x], [], (g) => [permute(g, inverse)]);
}

/** Swap two dimensions. */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const dims = x.shape.map((_, i) => i);
  const i = normAxis(a, dims.length, "transpose"), j = normAxis(b, dims.length, "transpose");
  [dims[i], dims[j]] = [dims[j], dims[i]];
  return permute(x, dims);
}

/** Elements `start..end-1` along `axis` (negative indices count from the end). Copies. */
export function slice(x: Tensor, axis: number, start: number, end?: number): Tensor {
  const ax = normAxis(axis, x.shape.length, "slice");
  const n = x.shape[ax];
  const lo = start < 0 ? start + n : start;
  const hi = end === undefined ? n : end < 0 ? end + n : end;
  if (!(0 <= lo && lo <= hi && hi <= n)) {
    throw new Error(`slice: range [${start}, ${end ?? n}) is outside dimension ${ax} of ${x.describe()}`);
  }
  const shape = x.shape.map((d, i) => (i === ax ? hi - lo : d));
  const out = Tensor.empty(x.gpu, shape, x.dtype);
  const strides = contiguousStrides(x.shape);
  // [outer, n, inner] around the axis
  const inner = strides[ax], outer = x.size / (n * inner), width = hi - lo;
  stridedCopy(x, out, shape, strides, contiguousStrides(shape), lo * strides[ax]);
  const xs = x.shape;
  return record("slice", out, [x], [], (g) => {
    // zeros around g in one pass, in whole outer blocks a band over one storage binding (a
    // clear would end the compute pass)
    if (4 * x.size <= bindingLimit(g.gpu) || ax > 0) {
      const gx = Tensor.empty(g.gpu, xs);
      for (const [band, o] of blockBands(gx, g, outer, n * inner, width * inner)) {
        const count = band.rows * n * inner;
        const params = u32s(count, n, inner, lo, width, o.base, band.base);
        launch(g.gpu, padKernel, [o.binding, bandBinding(g.gpu, gx.buffer, band)], count, params);
      }
      return [gx];
    }
    // along the first axis g is one run of gx: a buffer copy, which binds nothing
    const gx = Tensor.zeros(g.gpu, xs);
    stridedCopy(g, gx, g.shape, contiguousStrides(g.shape), strides, 0, lo * strides[ax]);
    return [gx];
  });
}

/**
 * Bands of `rows` rows of a [rows, wide] tensor (32-bit elements) with, for each, the window of a
 * [rows, narrow] one that holds the same rows and the element of its first row there.
 */
function blockBands(
  wide: Tensor,
  narrow: Tensor,
  rows: number,
  wideRow: number,
  narrowRow: number,
): [RowBand, { binding: ReturnType<typeof bandBinding>; base: number }][] {
  const gpu = wide.gpu, align = gpu.limits.minStorageBufferOffsetAlignment;
  return rowBands(gpu, rows, wideRow, "slice").map((band) => {
    const from = band.first * narrowRow * 4, start = Math.floor(from / align) * align;
    const window = {
      first: band.first,
      rows: band.rows,
      start,
      size: from - start + band.rows * narrowRow * 4,
      base: 0,
    };
    return [band, { binding: bandBinding(gpu, narrow.buffer, window), base: (from - start) / 4 }];
  });
}

/** Join tensors along `axis` (all other dimensions equal). */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error("concat: no tensors given");
  const rank = xs[0].shape.length;
  const ax = normAxis(axis, rank, "concat");
  for (const t of xs) {
    const ok = t.dtype === xs[0].dtype && t.shape.length === rank &&
      t.shape.every((d, i) => i === ax || d === xs[0].shape[i]);
    if (!ok) {
      throw new Error(`concat: ${t.describe()} does not match ${xs[0].describe()} outside axis ${ax}`);
    }
  }
  const sizes = xs.map((t) => t.shape[ax]);
  const shape = xs[0].shape.map((d, i) => (i === ax ? sizes.reduce((a, b) => a + b, 0) : d));
  const out = Tensor.empty(xs[0].gpu, shape, xs[0].dtype);
  const strides = contiguousStrides(shape);
  let at = 0;
  for (const t of xs) {
    stridedCopy(t, out, t.shape, contiguousStrides(t.shape), strides, 0, at * strides[ax]);
    at += t.shape[ax];
  }
  return record("concat", out, [...xs], [], (g, _, need) => {
    let from = 0;
    return sizes.map((s, i) => {
      const gi = need[i] ? slice(g, ax, from, from + s) : null;
      from += s;
      return gi;
    });
  });
}

/** Split along `axis` into pieces of the given sizes (which must add up to the dimension). */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const ax = normAxis(axis, x.shape.length, "split");
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total !== x.shape[ax]) {
    throw new Error(
      `split: sizes ${JSON.stringify(sizes)} add up to ${total}, dimension ${ax} is ${x.shape[ax]}`,
    );
  }
  let at = 0;
  return sizes.map((s) => slice(x, ax, at, at += s));
}

/**
 * Convert between f32 and f16 (the f16 copy of a frozen weight, or an f16 tensor's values in
 * f32), or a quantized tensor's values to f32 or f16. Not differentiable. Returns `x` itself when it already has `dtype`.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  if (x.dtype === "i32" || dtype === "i32") {
    throw new Error(`cast: ${x.describe()} to ${dtype} is not supported`);
  }
  if (dtype === "f16" && !x.gpu.f16) throw new Error("cast: this device has no shader-f16");
  if (isQuantized(dtype)) throw new Error(`cast: use quantize() to store ${x.describe()} as ${dtype}`);
  if (isQuantized(x.dtype)) {
    const values = Tensor.empty(x.gpu, x.shape);
    dequantizeInto(x, values);
    if (dtype === "f32") return values;
    const out = cast(values, dtype);
    values.dispose();
    return out;
  }
  const out = Tensor.empty(x.gpu, x.shape, dtype);
  stridedCopy(x, out, x.shape, contiguousStrides(x.shape), contiguousStrides(x.shape));
  return out;
}
