/**
 * Reductions and their duals: sum/mean over axes, `sumTo` (sum a broadcast result back to
 * an operand's shape) and `broadcastTo` (each is the other's gradient).
 * @module
 */
import { axpyKernel } from "../../../kernels/elementwise.ts";
import { argmaxKernel, reduceKernel } from "../../../kernels/reduce.ts";
import { bandBinding, bindingLimit, rowBands, rowWindow } from "../../gpu/bands.ts";
import { type Binding, grid } from "../../gpu/mod.ts";
import { record } from "../autograd.ts";
import {
  broadcastShapes,
  broadcastStrides,
  collapse,
  contiguousStrides,
  fmt,
  normAxis,
  sameShape,
} from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { stridedCopy } from "./copy.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";

/**
 * Invocations a reduction aims for before splitting the reduced range into chunks. A GPU needs
 * this many loads in flight: with 16384, a bias gradient (a [4096, 768] column sum) ran on 63
 * workgroups, each invocation summing 195 values one after another, and the 196 of them in a
 * RoBERTa-base full fine-tuning step took 8.7 ms on an H100.
 */
const TARGET_THREADS = 65536;
/** Smallest number of elements one invocation sums. */
const MIN_CHUNK = 32;

/**
 * `scale · Σ` over the dimensions flagged in `reduced`, as a tensor of shape `outShape`
 * (whose element count is the product of the kept dimensions). No gradient link. A tensor over
 * one storage binding (a bias gradient's [tokens, 3072] input on a small device) is summed in
 * bands of its leading axes when they are reduced.
 */
export function reduceRaw(
  x: Tensor,
  reduced: readonly boolean[],
  scale: number,
  outShape: readonly number[],
): Tensor {
  const gpu = x.gpu;
  // nothing to sum: 0 (times the scale: a mean's NaN)
  if (x.size === 0) {
    return Number.isNaN(scale) ? Tensor.full(gpu, outShape, NaN) : Tensor.zeros(gpu, outShape);
  }
  if (x.buffer.size <= bindingLimit(gpu)) {
    return reduceWindow(x, x.buffer, 0, x.shape, reduced, scale, outShape);
  }
  if (!reduced[0]) {
    throw new Error(
      `sum: ${x.describe()} is over this device's largest storage binding (${bindingLimit(gpu)} bytes); ` +
        `only a sum over its leading axes runs in bands`,
    );
  }
  // bands of the leading reduced axes, taken as one
  const firstKept = reduced.indexOf(false);
  const lead = firstKept < 0 ? reduced.length : firstKept;
  const rows = x.shape.slice(0, lead).reduce((a, b) => a * b, 1);
  const within = [true, ...reduced.slice(lead)];
  let total: Tensor | null = null;
  for (const band of rowBands(gpu, rows, x.size / rows, "sum")) {
    const shape = [band.rows, ...x.shape.slice(lead)];
    const part = reduceWindow(x, bandBinding(gpu, x.buffer, band), band.base, shape, within, scale, outShape);
    if (total) addInto(total, part);
    total ??= part;
  }
  return total!;
}

/** `total += part`, then `part` is freed. */
function addInto(total: Tensor, part: Tensor): void {
  const vec = total.size % 4 === 0;
  const n = vec ? total.size / 4 : total.size;
  launch(total.gpu, axpyKernel(vec), [part.buffer, total.buffer], n, u32s(n, f(1)));
  part.dispose();
}

/** {@link reduceRaw} over `shape`, stored contiguously in `binding` from element `base`. */
function reduceWindow(
  x: Tensor,
  binding: Binding,
  base: number,
  shape: readonly number[],
  reduced: readonly boolean[],
  scale: number,
  outShape: readonly number[],
): Tensor {
  const strides = contiguousStrides(shape);
  const pick = (want: boolean) => {
    const dims = shape.filter((_, i) => reduced[i] === want);
    return collapse(dims, [strides.filter((_, i) => reduced[i] === want)]);
  };
  const kept = pick(false), red = pick(true);
  const nOut = kept.shape.reduce((a, b) => a * b, 1);
  const nRed = red.shape.reduce((a, b) => a * b, 1);
  const gpu = x.gpu;
  const chunks = nRed <= 2 * MIN_CHUNK
    ? 1
    : Math.max(1, Math.min(Math.floor(TARGET_THREADS / nOut), Math.ceil(nRed / MIN_CHUNK)));
  const chunkFastest = red.strides[0][red.strides[0].length - 1] === 1;
  const kernel = reduceKernel(kept.shape.length, red.shape.length, chunkFastest);
  const out = Tensor.empty(gpu, chunks === 1 ? outShape : [chunks, nOut]);
  const params = u32s(
    nOut,
    nRed,
    chunks,
    f(chunks === 1 ? scale : 1),
    base,
    0,
    ...kept.shape,
    ...kept.strides[0],
    ...red.shape,
    ...red.strides[0],
  );
  launch(gpu, kernel, [binding, out.buffer], nOut * chunks, params);
  if (chunks === 1) return out;
  const total = reduceRaw(out, [true, false], scale, outShape);
  out.dispose();
  return total;
}

/** Which axes a `sum`/`mean` reduces, and the result's shape. */
function axesPlan(x: Tensor, axes: number | readonly number[] | undefined, keepDims: boolean, op: string) {
  const rank = x.shape.length;
  const list = axes === undefined ? x.shape.map((_, i) => i) : typeof axes === "number" ? [axes] : axes;
  const reduced = new Array<boolean>(rank).fill(false);
  for (const a of list) reduced[normAxis(a, rank, op)] = true;
  const kept = x.shape.map((d, i) => (reduced[i] ? 1 : d));
  const shape = keepDims ? kept : x.shape.filter((_, i) => !reduced[i]);
  const count = x.shape.reduce((acc, d, i) => (reduced[i] ? acc * d : acc), 1);
  return { reduced, kept, shape, count };
}

/** Sum over `axes` (all when omitted); reduced axes are dropped unless `keepDims`. */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  expectDtype("sum", "f32", x);
  const plan = axesPlan(x, axes, keepDims, "sum");
  const xs = x.shape;
  return record(
    "sum",
    reduceRaw(x, plan.reduced, 1, plan.shape),
    [x],
    [],
    (g) => [expand(g, plan.kept, xs, 1)],
  );
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  expectDtype("mean", "f32", x);
  const plan = axesPlan(x, axes, keepDims, "mean");
  const xs = x.shape;
  const inv = plan.count > 0 ? 1 / plan.count : NaN; // the mean of nothing is NaN, as torch's
  return record(
    "mean",
    reduceRaw(x, plan.reduced, inv, plan.shape),
    [x],
    [],
    (g) => [expand(g, plan.kept, xs, inv)],
  );
}

/** The gradient of a reduction: `g` (viewed with kept size-1 dims) broadcast back, times `scale`. */
function expand(g: Tensor, kept: readonly number[], shape: readonly number[], scale: number): Tensor {
  const gk = g.view(kept);
  const out = scale === 1 ? broadcastTo(gk, shape) : broadcastScaled(gk, shape, scale);
  if (out !== gk) gk.dispose();
  return out;
}

/**
 * f32 `x` repeated along its size-1 (or missing leading) dimensions to `shape`, times `scale`:
 * the reduction kernel with one term a sum. A result over one storage binding (a sum's gradient
 * over a [tokens, 3072] activation on a small device) is written in bands of its leading rows.
 */
function broadcastScaled(x: Tensor, shape: readonly number[], scale: number): Tensor {
  const gpu = x.gpu;
  const out = Tensor.empty(gpu, shape);
  if (out.size === 0) return out;
  // the leading rows are `step` elements apart in x; 0: each row repeats all of x
  const plan = collapse(shape, [broadcastStrides(x.shape, shape)]);
  const [rows, ...rest] = plan.shape, [step, ...inner] = plan.strides[0];
  const kernel = reduceKernel(plan.shape.length, 1, true);
  for (const band of rowBands(gpu, rows, out.size / rows, `broadcastTo ${fmt(shape)}`)) {
    const read = step === 0 ? rowWindow(gpu, 0, 1, x.size) : rowWindow(gpu, band.first, band.rows, step);
    const n = (band.rows * out.size) / rows;
    const params = u32s(n, 1, 1, f(scale), read.base, band.base, band.rows, ...rest, step, ...inner, 1, 0);
    launch(gpu, kernel, [bandBinding(gpu, x.buffer, read), bandBinding(gpu, out.buffer, band)], n, params);
  }
  return out;
}

/**
 * Sum `x` down to `shape`, which must broadcast to `x.shape` (the gradient of a broadcast).
 * Returns `x` itself when the shapes already match.
 */
export function sumTo(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  expectDtype("sumTo", "f32", x);
  const target = broadcastShapes(shape, x.shape, "sumTo");
  if (!sameShape(target, x.shape)) {
    throw new Error(`sumTo: ${fmt(shape)} does not broadcast to ${fmt(x.shape)}`);
  }
  const off = x.shape.length - shape.length;
  const reduced = x.shape.map((d, i) => i < off || (shape[i - off] === 1 && d !== 1));
  const xs = x.shape;
  return record("sumTo", reduceRaw(x, reduced, 1, shape), [x], [], (g) => [broadcastTo(g, xs)]);
}

/** Repeat `x` along its size-1 (or missing leading) dimensions to `shape`. */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const target = broadcastShapes(x.shape, shape, "broadcastTo");
  if (!sameShape(target, shape)) {
    throw new Error(`broadcastTo: ${x.describe()} does not broadcast to ${fmt(shape)}`);
  }
  const out = Tensor.empty(x.gpu, shape, x.dtype);
  stridedCopy(x, out, shape, broadcastStrides(x.shape, shape), contiguousStrides(shape));
  const xs = x.shape;
  return record("broadcastTo", out, [x], [], (g) => [sumTo(g, xs)]);
}

/**
 * The index of the largest value of each row of x [..., n] (finite f32 values), the first on
 * ties, as i32 [...]: greedy decoding's next token without reading the logits back. Not
 * differentiable.
 */
export function argmax(x: Tensor): Tensor {
  expectDtype("argmax", "f32", x);
  const n = x.shape[x.shape.length - 1];
  if (!(x.shape.length >= 1 && n >= 1)) {
    throw new Error(`argmax: expected [..., n] with n ≥ 1, got ${x.describe()}`);
  }
  const rows = x.size / n;
  const out = Tensor.empty(x.gpu, x.shape.slice(0, -1), "i32");
  // rows over one binding (an LM head's logits at thousands of tokens) go in bands
  const bands = rows > 0 ? rowBands(x.gpu, rows, n, "argmax") : [];
  for (const band of bands) {
    const at = bandBinding(x.gpu, x.buffer, band);
    x.gpu.stream.dispatch(
      argmaxKernel,
      [at, out.buffer],
      grid(x.gpu, band.rows),
      u32s(band.rows, n, band.first, band.base),
    );
  }
  return out;
}
