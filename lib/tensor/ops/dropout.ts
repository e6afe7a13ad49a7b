/**
 * Seeded dropout: the keep mask is a hash of (seed, step, site, element index), so it is
 * reproducible and the backward pass regenerates it instead of storing it.
 * @module
 */
import { dropoutAddKernel, dropoutKernel, pcgHash } from "../../../kernels/elementwise.ts";
import { record } from "../autograd.ts";
import { fmt, sameShape } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { add } from "./elementwise.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";

/** Where a dropout mask comes from: the run's seed, the training step, and the call site. */
export interface DropoutKey {
  seed: number;
  step: number;
  /** Distinguishes dropout layers within one step (e.g. layer index · 4 + which). */
  site?: number;
  /**
   * The tensor holds only some rows of the one whose masks to draw: runs of `run` elements,
   * `stride` apart there (a layer computed at the first position of each sequence alone). Its
   * element e takes the mask of element ⌊e / run⌋·stride + e mod run, so it drops what the
   * whole computation would.
   */
  rows?: DropoutRows;
}

/** Runs of `run` elements, `stride` apart: which elements of a tensor another one holds (`DropoutKey.rows`). */
export interface DropoutRows {
  run: number;
  stride: number;
}

/** A dropout for an op to apply in its own pass (softmax, a residual LayerNorm): probability p, masks from key. */
export interface DropoutSpec {
  p: number;
  key: DropoutKey;
}

/** The u32 key of a mask (shared by the kernel and the CPU reference). */
export function dropoutMaskKey(key: DropoutKey): number {
  return pcgHash((key.seed >>> 0) ^ pcgHash((key.step >>> 0) ^ pcgHash((key.site ?? 0) >>> 0)));
}

/**
 * The uniform words of a dropout that a kernel applies (`DROPOUT_MASK`): key, threshold,
 * the scale of kept elements (f32 bits), run and stride. Without one, every element is kept
 * as it is.
 */
export function dropoutWords(drop: DropoutSpec | null): number[] {
  if (!drop) return [0, 0, f(1), 1, 1];
  const { p, key } = drop;
  const { run, stride } = key.rows ?? { run: 1, stride: 1 };
  if (!(Number.isInteger(run) && Number.isInteger(stride) && run >= 1 && stride >= run)) {
    throw new Error(`dropout: rows {run: ${run}, stride: ${stride}} need integers with 1 ≤ run ≤ stride`);
  }
  return [dropoutMaskKey(key), dropoutThreshold(p), f(p === 1 ? 0 : 1 / (1 - p)), run, stride];
}

/** The u32 threshold below which a hash drops its element: round(p · 2³²). */
export function dropoutThreshold(p: number): number {
  return Math.min(4294967295, Math.round(p * 4294967296));
}

/**
 * Zero each element with probability `p` and scale the rest by 1/(1−p). Identity (returns
 * `x`) when p = 0; call it only in training.
 */
export function dropout(x: Tensor, p: number, key: DropoutKey): Tensor {
  expectDtype("dropout", "f32", x);
  checkProbability("dropout", p);
  if (p === 0) return x;
  const { x4, n, params } = launchPlan(x, p, key);
  const apply = (src: Tensor) => {
    const out = Tensor.empty(src.gpu, src.shape);
    launch(src.gpu, dropoutKernel(x4), [src.buffer, out.buffer], n, params);
    return out;
  };
  return record("dropout", apply(x), [x], [], (g) => [apply(g)]);
}

/**
 * `residual + dropout(x, p, key)` in one pass, with the mask {@link dropout} would draw (so
 * the same result); `add(x, residual)` when p = 0.
 */
export function dropoutAdd(x: Tensor, residual: Tensor, p: number, key: DropoutKey): Tensor {
  expectDtype("dropoutAdd", "f32", x, residual);
  checkProbability("dropoutAdd", p);
  if (!sameShape(x.shape, residual.shape)) {
    throw new Error(
      `dropoutAdd: x ${fmt(x.shape)} and the residual ${fmt(residual.shape)} must have one shape`,
    );
  }
  if (p === 0) return add(x, residual);
  const { x4, n, params } = launchPlan(x, p, key);
  const out = Tensor.empty(x.gpu, x.shape);
  launch(x.gpu, dropoutAddKernel(x4), [x.buffer, residual.buffer, out.buffer], n, params);
  return record("dropoutAdd", out, [x, residual], [], (g, _, need) => {
    let gx: Tensor | null = null;
    if (need[0]) {
      gx = Tensor.empty(g.gpu, g.shape);
      launch(g.gpu, dropoutKernel(x4), [g.buffer, gx.buffer], n, params);
    }
    return [gx, need[1] ? g : null];
  });
}

function checkProbability(op: string, p: number): void {
  if (!(p >= 0 && p <= 1)) throw new Error(`${op}: probability ${p} is outside [0, 1]`);
}

/** Invocations (vec4 when the size allows) and uniform of a dropout kernel over x. */
function launchPlan(x: Tensor, p: number, key: DropoutKey) {
  const x4 = x.size % 4 === 0;
  const n = x4 ? x.size / 4 : x.size;
  const params = u32s(n, ...dropoutWords({ p, key }));
  return { x4, n, params };
}
