/**
 * Softmax over the last dimension, plain or with attention masks, and its gradient rule.
 * @module
 */
import { rowWorkgroupSize } from "../../../kernels/indexing.ts";
import { softmaxBackwardKernel, softmaxKernel } from "../../../kernels/softmax.ts";
import { grid } from "../../gpu/mod.ts";
import { record } from "../autograd.ts";
import { fmt } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { dropoutFactors, type DropoutSpec, dropoutWords, needsFactors } from "./dropout.ts";
import { mul } from "./elementwise.ts";
import { expectDtype, f, u32s } from "./util.ts";

/** Masking of {@link maskedSoftmax}, for scores laid out [batch, ..., T, S]. */
export interface SoftmaxMask {
  /** Hide keys after the query (bottom-right aligned when S > T). */
  causal?: boolean;
  /** i32 [batch, S]: 0 hides a key (padding), anything else keeps it. */
  padding?: Tensor | null;
  /** Query positions per batch entry's block of rows (T); default: the second-to-last dimension. */
  queries?: number;
  /** With `causal`: a query sees at most this many keys, its own and those before (sliding window). */
  window?: number;
}

/** The uniform value of no attention window (every earlier key is seen). */
export const NO_WINDOW = 0xffffffff;

/** The window of a causal mask as the kernels' uniform: a positive integer, or {@link NO_WINDOW}. */
export function windowWord(window: number | undefined): number {
  if (window === undefined) return NO_WINDOW;
  if (!(Number.isInteger(window) && window >= 1)) {
    throw new RangeError(`attention: window must be an integer ≥ 1, got ${window}`);
  }
  return Math.min(window, NO_WINDOW);
}

/** `softmax(x)` over the last dimension. */
export function softmax(x: Tensor): Tensor {
  return maskedSoftmax(x, 1, {});
}

/**
 * `softmax(scale · x)` over the last dimension with masked keys set to probability 0 (a row
 * with every key masked is all zeros). Rows of the same batch entry are consecutive. With
 * `dropout`, returns `dropout(softmax(…), p, key)` from the same pass, with the masks
 * `dropout` draws (attention's dropout on the probabilities).
 */
export function maskedSoftmax(
  x: Tensor,
  scale: number,
  mask: SoftmaxMask,
  dropout: DropoutSpec | null = null,
): Tensor {
  expectDtype("softmax", "f32", x);
  const gpu = x.gpu;
  if (x.shape.length === 0) throw new Error("softmax: needs at least one dimension");
  const s = x.shape[x.shape.length - 1];
  const rows = s === 0 ? 0 : x.size / s;
  const t = mask.queries ?? (x.shape.length >= 2 ? x.shape[x.shape.length - 2] : 1);
  let rowsPerBatch = rows;
  const pad = mask.padding ?? null;
  if (pad) {
    expectDtype("softmax mask", "i32", pad);
    if (pad.shape.length !== 2 || pad.shape[1] !== s || rows % pad.shape[0] !== 0) {
      throw new Error(
        `softmax: padding mask ${pad.describe()} does not fit scores ${fmt(x.shape)}: expected [batch, ${s}]`,
      );
    }
    rowsPerBatch = rows / pad.shape[0];
  }
  if (mask.causal && s < t) throw new Error(`softmax: causal mask needs keys ≥ queries, got ${s} < ${t}`);
  const drop = dropout && dropout.p > 0 ? dropout : null;
  if (drop && !(drop.p <= 1)) throw new Error(`softmax: dropout probability ${drop.p} is outside [0, 1]`);
  // rows at given positions (one query per sequence) drop through factors
  if (drop && needsFactors(drop)) {
    const perSequence = rows / drop.key.rows!.batch;
    return mul(maskedSoftmax(x, scale, mask), dropoutFactors(gpu, x.shape, drop, s, perSequence));
  }
  const dropWords = dropoutWords(drop, s);
  const y = Tensor.empty(gpu, x.shape);
  const yd = drop ? Tensor.empty(gpu, x.shape) : y;
  const bufs = [x.buffer, ...(pad ? [pad.buffer] : []), y.buffer, ...(drop ? [yd.buffer] : [])];
  const params = u32s(
    rows,
    s,
    Math.max(1, t),
    s - t,
    Math.max(1, rowsPerBatch),
    f(scale),
    ...dropWords,
    windowWord(mask.window),
  );
  const wg = rowWorkgroupSize(s);
  if (rows > 0) {
    gpu.stream.dispatch(softmaxKernel(!!mask.causal, !!pad, wg, !!drop), bufs, grid(gpu, rows), params);
  }
  return record(drop ? "softmax_dropout" : "softmax", yd, [x], [y], (g, [vy]) => {
    const gx = Tensor.empty(gpu, vy.shape);
    const bind = [vy.buffer, g.buffer, gx.buffer];
    if (rows > 0) {
      const kernel = softmaxBackwardKernel(wg, !!drop);
      gpu.stream.dispatch(kernel, bind, grid(gpu, rows), u32s(rows, s, f(scale), ...dropWords));
    }
    return [gx];
  });
}
