/**
 * Several linear layers of one input as one product (attention's query, key and value): their
 * weights, with any adapter's ΔW folded in, stacked into one [ΣM, N] weight. On a GPU a
 * 4096×2304 output fills the device with large tiles where three 4096×768 ones cannot, and
 * backward's input gradient is one product over K = ΣM instead of three accumulating ones.
 * @module
 */
import {
  currentReplay,
  isGradEnabled,
  isQuantized,
  linear,
  noGrad,
  record,
  reshape,
  slice,
  Tensor,
} from "../tensor/mod.ts";
import { bindingLimit } from "../gpu/bands.ts";
import type { Gpu } from "../gpu/mod.ts";
import { encodeMatmul } from "../linalg/matmul.ts";
import { stridedCopy } from "../tensor/ops/copy.ts";
import { linearInputGradient } from "../tensor/ops/matmul.ts";
import { FUSIONS } from "./fusions.ts";
import { disposeUnkept, stackOf, updateStack } from "./fused_linear_stack.ts";
import type { FoldedUpdate, Linear } from "./linear.ts";

export { releaseStacks } from "./fused_linear_stack.ts";

/**
 * Largest weight (M·N) fused: a layer at least this large makes a product that fills a GPU on its
 * own (RoBERTa-base's 768×768 is fused, LLaMA-7B's 4096×4096 is not).
 */
const FUSE_MAX_ELEMENTS = 1 << 22;

/**
 * `x` through every layer of `layers`, their outputs concatenated along the last dimension
 * ([..., M₁ + M₂ + …]), as one product, or null when they cannot share one: each must be an
 * nn.Linear (out, in) of `x`'s width with a frozen weight and bias of at most
 * {@link FUSE_MAX_ELEMENTS}, the stacked weight and output must each fit one storage binding,
 * and `FUSIONS.qkv` must be on. An adapter that folds into its weight for this many tokens (SSH,
 * FourierFT) is folded into the stacked weight; a low-rank one (LoRA) accumulates its product
 * into its layer's columns, and any other adds its `delta(x)` there. Gradients reach x and the
 * adapters as through the separate layers. A recorded call (training, outside a checkpoint's
 * rerun) keeps the stacked weight for the next calls, which copy frozen rows again only when their
 * tensor changes or is rewritten in place ({@link Tensor.touch}) and fold an adapter again only
 * when its coefficients changed; `releaseStacks` (a model's dispose) frees it. Other calls use a
 * kept stack or make one of their own, freed after them.
 */
export function fusedProjection(layers: readonly Linear[], x: Tensor): Tensor | null {
  const shape = projectionShape(layers, x);
  if (!shape) return null;
  // f16 weights stay f16 unless an adapter may fold ΔW into them (in f32)
  const f16 = layers.every((l) => !l.adapter?.fold && l.weight.dtype === "f16");
  // a recorded forward keeps its stack for the next step; a forward without a tape (inference,
  // checkpointing's first run) or a checkpoint's rerun uses a kept one or makes one for itself, so
  // that inference and checkpointing hold one layer's stack at a time, as they did
  const kept = isGradEnabled() && currentReplay() === null;
  const stack = stackOf(layers, f16 ? "f16" : "f32", shape.n, kept);
  const folds = updateStack(stack, layers, shape.n, shape.tokens, shape.firstRows);
  const y = noGrad(() => linear(x, stack.weight, stack.bias));
  const unfolded = addUnfolded(layers, folds, x, y, shape);
  recordProjection(y, x, stack.weight, folds, unfolded, shape);
  disposeUnkept(stack);
  return y;
}

/**
 * The sizes of one fused product: x's width `n` and `tokens`, each layer's output width
 * (`sizes`), their `total`, and each layer's first row of the stack (its first column of y).
 */
interface ProjectionShape {
  n: number;
  tokens: number;
  sizes: number[];
  total: number;
  firstRows: number[];
}

/** The shape of `layers`' product of `x`; null when they cannot share one ({@link fusedProjection}). */
function projectionShape(layers: readonly Linear[], x: Tensor): ProjectionShape | null {
  const n = x.shape[x.shape.length - 1];
  if (!FUSIONS.qkv || layers.length < 2 || x.dtype !== "f32" || x.shape.length < 2 || x.size === 0) {
    return null;
  }
  // quantized weights stay quantized: an f32 stack of them would outweigh the whole model
  const fits = layers.every((l) =>
    l.layout === "out_in" && l.inFeatures === n && !l.weight.requiresGrad && !l.bias?.requiresGrad &&
    l.weight.size <= FUSE_MAX_ELEMENTS && !isQuantized(l.weight.dtype)
  );
  if (!fits) return null;
  const tokens = x.size / n;
  const sizes = layers.map((l) => l.outFeatures);
  const total = sizes.reduce((a, b) => a + b, 0);
  // the stacked weight and output are read whole (by the attention): each must fit a binding
  if (4 * total * Math.max(n, tokens) > bindingLimit(x.gpu)) return null;
  const firstRows = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  return { n, tokens, sizes, total, firstRows };
}

/** A low-rank adapter's product s·h·Bᵀ, accumulated into its layer's `m` columns from `at`. */
interface LowRankTerm {
  at: number;
  m: number;
  h: Tensor;
  b: Tensor;
  scale: number;
}

/** Another adapter's delta(x), added into its layer's columns from `at`. */
interface DeltaTerm {
  at: number;
  d: Tensor;
}

/** The x·ΔWᵀ terms of the adapters that did not fold, in layer order. */
interface Unfolded {
  lowRanks: LowRankTerm[];
  deltas: DeltaTerm[];
}

/**
 * Add into `y` the x·ΔWᵀ of the adapters that did not fold, in their layers' columns: a low-rank
 * one (LoRA) as the product s·h·Bᵀ accumulated there, any other as its delta(x).
 */
function addUnfolded(
  layers: readonly Linear[],
  folds: readonly (FoldedUpdate | null)[],
  x: Tensor,
  y: Tensor,
  { tokens, sizes, total, firstRows }: ProjectionShape,
): Unfolded {
  const lowRanks: LowRankTerm[] = [];
  const deltas: DeltaTerm[] = [];
  layers.forEach((l, i) => {
    if (!l.adapter || folds[i]) return;
    const m = sizes[i], at = firstRows[i];
    const lr = l.adapter.lowRank?.(x);
    if (lr) {
      const r = lr.b.shape[1];
      encodeMatmul(x.gpu, lr.h.buffer, lr.b.buffer, y.buffer, tokens, m, r, {
        transB: true,
        alpha: lr.scale,
        accumulate: true,
        layoutC: { ld: total, offset: at },
      });
      lowRanks.push({ at, m, ...lr });
    } else {
      const d = l.adapter.delta(x);
      stridedCopy(d, y, [tokens, m], [m, 1], [total, 1], 0, at, true);
      deltas.push({ at, d });
    }
  });
  return { lowRanks, deltas };
}

/**
 * Record `y`'s gradient rule: to x through the stacked `weight`, to the folded adapters'
 * parameters, to the low-rank factors, and to the other adapters' deltas.
 */
function recordProjection(
  y: Tensor,
  x: Tensor,
  weight: Tensor,
  folds: readonly (FoldedUpdate | null)[],
  { lowRanks, deltas }: Unfolded,
  { n, tokens, total, firstRows }: ProjectionShape,
): void {
  const params = folds.flatMap((u) => u ? [u.param] : []);
  const inputs = [x, ...params, ...lowRanks.flatMap((e) => [e.h, e.b]), ...deltas.map((e) => e.d)];
  const saved = [x, weight, ...lowRanks.flatMap((e) => [e.h, e.b])];
  // need[] and the gradients returned follow inputs: x, the folds' parameters, h and B of each
  // low-rank term, the deltas
  const lowRanksAt = 1 + params.length, deltasAt = lowRanksAt + 2 * lowRanks.length;
  record("fused_linear", y, inputs, saved, (g, [xs, w, ...factors], need, acc) => {
    const dx = need[0] ? linearInputGradient(g, w, "out_in", acc[0]) : null;
    const g2 = reshape(g, [tokens, total]), x2 = reshape(xs, [tokens, n]);
    const shared = new Map<string, Tensor>();
    const live = folds.flatMap((u, i) => u ? [{ u, at: firstRows[i] }] : []);
    const foldGrads = live.map(({ u, at }, j) => need[1 + j] ? u.gradient(x2, g2, shared, at) : null);
    const lowRankGrads = lowRankGradients(x.gpu, g, factors, lowRanks, need.slice(lowRanksAt), tokens, total);
    const deltaGrads = deltas.map(({ at, d }, j) =>
      need[deltasAt + j] ? reshape(slice(g2, 1, at, at + d.shape[d.shape.length - 1]), d.shape) : null
    );
    return [dx, ...foldGrads, ...lowRankGrads, ...deltaGrads];
  });
}

/** ∂h and ∂B of each low-rank term (h, B in `factors`), where `need`ed: [∂h₀, ∂B₀, ∂h₁, …]. */
function lowRankGradients(
  gpu: Gpu,
  g: Tensor,
  factors: readonly Tensor[],
  lowRanks: readonly LowRankTerm[],
  need: readonly boolean[],
  tokens: number,
  total: number,
): (Tensor | null)[] {
  return lowRanks.flatMap(({ at, m, scale }, j) => {
    // the layer's columns of g read in place: ∂h = s·g·B, ∂B = s·gᵀ·h
    const [h, b] = [factors[2 * j], factors[2 * j + 1]];
    const cols = { ld: total, offset: at };
    const r = b.shape[1];
    let gh: Tensor | null = null, gb: Tensor | null = null;
    if (need[2 * j]) {
      gh = Tensor.empty(gpu, h.shape);
      encodeMatmul(gpu, g.buffer, b.buffer, gh.buffer, tokens, r, m, { alpha: scale, layoutA: cols });
    }
    if (need[2 * j + 1]) {
      gb = Tensor.empty(gpu, b.shape);
      encodeMatmul(gpu, g.buffer, h.buffer, gb.buffer, m, r, tokens, {
        transA: true,
        alpha: scale,
        layoutA: cols,
      });
    }
    return [gh, gb];
  });
}
