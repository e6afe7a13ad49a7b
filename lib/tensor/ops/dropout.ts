/**
 * Seeded dropout: the keep mask is a hash of (seed, step, site, element index), so it is
 * reproducible and the backward pass regenerates it instead of storing it.
 * @module
 */
import { DROPOUT_FACTORS, dropoutAddKernel, dropoutKernel, pcgHash } from "../../../kernels/elementwise.ts";
import { record } from "../autograd.ts";
import { fmt, sameShape } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import type { Gpu } from "../../gpu/mod.ts";
import { add, mul } from "./elementwise.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";

/** Where a dropout mask comes from: the run's seed, the training step, and the call site. */
export interface DropoutKey {
  /** Seed of the run's dropout masks (a model's `dropoutSeed`). */
  seed: number;
  /** Training step the masks belong to (a model's `dropoutStep`): each step draws new masks. */
  step: number;
  /** Distinguishes dropout layers within one step (e.g. layer index · 4 + which). */
  site?: number;
  /**
   * The tensor holds one position of each sequence of the site's tensor, not all of them (a
   * last layer computed only where its head reads): it drops what the whole tensor drops there.
   */
  rows?: DropoutRows;
}

/**
 * One position of each of `batch` sequences of `length`: position `at[b]` of sequence b (0 for
 * every sequence when absent). A tensor holding them has, per sequence, `group` rows of `unit`
 * elements (a token's features: 1 row; one query's attention probabilities: a row per head);
 * its element e in row r takes the mask of element (r·length + at[⌊r / group⌋])·unit + e mod
 * unit of the whole tensor. Kernels map the index themselves when `at` is absent; with `at`, the
 * ops multiply by factors drawn from the positions (`dropoutFactors`).
 */
export interface DropoutRows {
  /** Sequences in the batch. */
  batch: number;
  /** Positions per sequence in the whole tensor. */
  length: number;
  /** The position held of each sequence [batch]; position 0 of every sequence when absent. */
  at?: Int32Array;
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
 * the scale of kept elements (f32 bits), and run and stride: `unit` and length·unit for a
 * tensor holding rows of `unit` elements ({@link DropoutRows}), 1 and 1 otherwise. Without a
 * dropout, every element is kept as it is.
 */
export function dropoutWords(drop: DropoutSpec | null, unit = 1): number[] {
  if (!drop) return [0, 0, f(1), 1, 1];
  const { p, key } = drop;
  if (key.rows?.at) throw new Error("dropout: rows at positions are applied through dropoutFactors");
  const [run, stride] = key.rows ? [unit, key.rows.length * unit] : [1, 1];
  return [dropoutMaskKey(key), dropoutThreshold(p), keptScale(p), run, stride];
}

/** Whether a dropout must be applied as factors (`dropoutFactors`): rows at given positions. */
export function needsFactors(drop: DropoutSpec | null): boolean {
  return !!drop?.key.rows?.at;
}

/**
 * `index(e)`: the element of the whole tensor whose mask element e of a tensor holding `rows`
 * takes, for rows of `unit` elements, `group` of them per sequence ({@link DropoutRows}).
 */
export function wholeIndex(rows: DropoutRows, unit: number, group: number): (e: number) => number {
  checkRows(rows, unit, group);
  const { length, at } = rows;
  return (e) => {
    const r = Math.floor(e / unit);
    return (r * length + (at ? at[Math.floor(r / group)] : 0)) * unit + (e % unit);
  };
}

/** Throws unless `rows` can hold rows of `unit` elements, `group` per sequence. */
function checkRows(rows: DropoutRows, unit: number, group: number): void {
  const { batch, at } = rows;
  if (!(Number.isInteger(unit) && Number.isInteger(group) && unit >= 1 && group >= 1)) {
    throw new Error(`dropout: rows need a whole number of ${unit}-element rows, ${group} per sequence`);
  }
  if (at && at.length !== batch) {
    throw new Error(`dropout: rows at ${at.length} positions for ${batch} sequences`);
  }
}

/**
 * The factors of a dropout at given positions (`key.rows.at`) as a tensor of `shape`: 1/(1−p)
 * where kept, 0 where dropped, with the masks of {@link wholeIndex} for rows of `unit`
 * elements, `group` per sequence. Drawn on the GPU from the positions alone; multiplying by
 * them is the kernels' dropout, bit for bit.
 */
export function dropoutFactors(
  gpu: Gpu,
  shape: readonly number[],
  drop: DropoutSpec,
  unit: number,
  group: number,
): Tensor {
  const rows = drop.key.rows;
  if (!rows?.at) throw new Error("dropoutFactors: the dropout's key has no rows at given positions");
  checkRows(rows, unit, group);
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== rows.batch * group * unit) {
    throw new Error(
      `dropoutFactors: ${n} elements are not ${rows.batch} sequences of ${group} rows of ${unit}`,
    );
  }
  const at = Tensor.from(gpu, rows.at, [rows.batch]);
  const out = Tensor.empty(gpu, [...shape]);
  const { p, key } = drop;
  const params = u32s(n, dropoutMaskKey(key), dropoutThreshold(p), keptScale(p), unit, rows.length, group);
  launch(gpu, DROPOUT_FACTORS, [at.buffer, out.buffer], n, params);
  at.dispose();
  return out;
}

/** The scale of kept elements as f32 bits (0 when p = 1). */
function keptScale(p: number): number {
  return f(p === 1 ? 0 : 1 / (1 - p));
}

/** Rows of one token's features per sequence: the unit of an elementwise dropout over x. */
function tokenUnit(x: Tensor, key: DropoutKey): number {
  const batch = key.rows?.batch ?? 1;
  if (x.size % batch !== 0) {
    throw new Error(`dropout: ${x.describe()} does not hold one row for each of ${batch} sequences`);
  }
  return x.size / batch;
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
  if (key.rows?.at) return mul(x, dropoutFactors(x.gpu, x.shape, { p, key }, tokenUnit(x, key), 1));
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
  if (key.rows?.at) return add(dropout(x, p, key), residual);
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
  const params = u32s(n, ...dropoutWords({ p, key }, tokenUnit(x, key)));
  return { x4, n, params };
}
