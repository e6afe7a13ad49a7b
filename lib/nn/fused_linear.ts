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
  keep,
  linear,
  noGrad,
  record,
  reshape,
  slice,
  Tensor,
} from "../tensor/mod.ts";
import { bindingLimit } from "../gpu/bands.ts";
import { encodeMatmul } from "../linalg/matmul.ts";
import { copyAll, stridedCopy } from "../tensor/ops/copy.ts";
import { linearInputGradient } from "../tensor/ops/matmul.ts";
import { FUSIONS } from "./fusions.ts";
import type { FoldedUpdate, Linear, LinearAdapter } from "./linear.ts";

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
  const tokens = x.size / n, gpu = x.gpu;
  const sizes = layers.map((l) => l.outFeatures);
  const total = sizes.reduce((a, b) => a + b, 0);
  // the stacked weight and output are read whole (by the attention): each must fit a binding
  if (4 * total * Math.max(n, tokens) > bindingLimit(gpu)) return null;
  // f16 weights stay f16 unless an adapter may fold ΔW into them (in f32)
  const f16 = layers.every((l) => !l.adapter?.fold && l.weight.dtype === "f16");
  // a recorded forward keeps its stack for the next step; a forward without a tape (inference,
  // checkpointing's first run) or a checkpoint's rerun uses a kept one or makes one for itself, so
  // that inference and checkpointing hold one layer's stack at a time, as they did
  const kept = isGradEnabled() && currentReplay() === null;
  const stack = stackOf(layers, f16 ? "f16" : "f32", n, kept);
  const { weight, bias } = stack;
  const firstRows = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  // folding adapters write W + ΔW themselves; the other weights and the biases are copied in
  // after them (when the stack does not hold them already), so that the copies end the
  // compute pass once and not between the folds
  const folds: (FoldedUpdate | null)[] = layers.map((l, i) => {
    const written = holdsFold(stack.rows[i], l);
    const folded = l.adapter?.fold?.(l, tokens, weight, firstRows[i] * n, written) ?? null;
    if (folded) {
      const { param } = folded;
      stack.rows[i] = {
        source: l.weight,
        version: l.weight.version,
        fold: { adapter: l.adapter!, param, version: param.version },
      };
    }
    return folded;
  });
  layers.forEach((l, i) => {
    if (folds[i] || holds(stack.rows[i], l.weight)) return;
    copyAll(l.weight, weight, firstRows[i] * n);
    stack.rows[i] = { source: l.weight, version: l.weight.version };
  });
  if (bias) {
    layers.forEach((l, i) => {
      if (holds(stack.biasRows[i], l.bias)) return;
      if (l.bias) copyAll(l.bias, bias, firstRows[i]);
      else gpu.stream.clear(bias.buffer, firstRows[i] * 4, l.outFeatures * 4);
      stack.biasRows[i] = { source: l.bias, version: l.bias?.version ?? 0 };
    });
  }
  const y = noGrad(() => linear(x, weight, bias));
  // adapters that did not fold add their x·ΔWᵀ into their columns: a low-rank one (LoRA) as
  // the product s·h·Bᵀ accumulated there, any other as its delta(x)
  const lowRanks: { at: number; m: number; h: Tensor; b: Tensor; scale: number }[] = [];
  const deltas: { at: number; d: Tensor }[] = [];
  let at = 0;
  layers.forEach((l, i) => {
    const m = sizes[i];
    if (l.adapter && !folds[i]) {
      const lr = l.adapter.lowRank?.(x);
      if (lr) {
        const r = lr.b.shape[1];
        encodeMatmul(gpu, lr.h.buffer, lr.b.buffer, y.buffer, tokens, m, r, {
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
    }
    at += m;
  });
  const params = folds.flatMap((u) => u ? [u.param] : []);
  const inputs = [x, ...params, ...lowRanks.flatMap((e) => [e.h, e.b]), ...deltas.map((e) => e.d)];
  const saved = [x, weight, ...lowRanks.flatMap((e) => [e.h, e.b])];
  record("fused_linear", y, inputs, saved, (g, [xs, w, ...factors], need, acc) => {
    const dx = need[0] ? linearInputGradient(g, w, "out_in", acc[0]) : null;
    const g2 = reshape(g, [tokens, total]), x2 = reshape(xs, [tokens, n]);
    const shared = new Map<string, Tensor>();
    const grads: (Tensor | null)[] = [dx];
    let at = 0, p = 0;
    folds.forEach((u, i) => {
      if (u) grads.push(need[++p] ? u.gradient(x2, g2, shared, at) : null);
      at += sizes[i];
    });
    for (const [j, { at, m, scale }] of lowRanks.entries()) {
      // the layer's columns of g read in place: ∂h = s·g·B, ∂B = s·gᵀ·h
      const [h, b] = [factors[2 * j], factors[2 * j + 1]];
      const cols = { ld: total, offset: at };
      const r = b.shape[1];
      let gh: Tensor | null = null, gb: Tensor | null = null;
      if (need[++p]) {
        gh = Tensor.empty(gpu, h.shape);
        encodeMatmul(gpu, g.buffer, b.buffer, gh.buffer, tokens, r, m, { alpha: scale, layoutA: cols });
      }
      if (need[++p]) {
        gb = Tensor.empty(gpu, b.shape);
        encodeMatmul(gpu, g.buffer, h.buffer, gb.buffer, m, r, tokens, {
          transA: true,
          alpha: scale,
          layoutA: cols,
        });
      }
      grads.push(gh, gb);
    }
    for (const { at, d } of deltas) {
      grads.push(need[++p] ? reshape(slice(g2, 1, at, at + d.shape[d.shape.length - 1]), d.shape) : null);
    }
    return grads;
  });
  if (stacks.get(layers[0]) !== stack) disposeStack(stack); // a tape keeps its own reference
  return y;
}

/**
 * What a stack's rows hold: a frozen tensor at a version (null: zeros), plus, where an adapter
 * folded into them, its ΔW from its trainable tensor at a version.
 */
interface Held {
  source: Tensor | null;
  version: number;
  fold?: { adapter: LinearAdapter; param: Tensor; version: number };
}

/**
 * The stacked weight [ΣM, N] and bias [ΣM] of one list of layers, kept across forwards: the
 * frozen rows are copied once, not each step (≈ 47 copies a RoBERTa-base step), and a folding
 * adapter's W + ΔW is written again only when its coefficients changed. `rows[i]` says what
 * layer i's rows hold (null: nothing known).
 */
interface Stack {
  layers: readonly Linear[];
  weight: Tensor;
  bias: Tensor | null;
  rows: (Held | null)[];
  biasRows: (Held | null)[];
  /** The stream's {@link Stream.discards} when made: a discard may have dropped its copies. */
  discards: number;
}

/** Each list's stack, by its first layer. */
const stacks = new WeakMap<Linear, Stack>();

/** Whether rows that hold `held` hold `source`'s current values (null: zeros), and no ΔW. */
function holds(held: Held | null, source: Tensor | null): boolean {
  return held !== null && !held.fold && held.source === source && held.version === (source?.version ?? 0);
}

/**
 * Whether rows that hold `held` hold W + ΔW of `layer`'s current weight and adapter (the
 * coefficients unchanged since: a micro-batch of an accumulated step, a recompute, evaluation).
 */
function holdsFold(held: Held | null, layer: Linear): boolean {
  const fold = held?.fold;
  return !!fold && fold.adapter === layer.adapter && fold.param.version === fold.version &&
    held!.source === layer.weight && held!.version === layer.weight.version;
}

/**
 * The stack of `layers`: the kept one, else a new one, kept when `keepNew` (it replaces a kept one
 * whose layers, dtype or bias changed, whose copies a command discard may have lost, or that a
 * recorded product still reads: a tape's backward must see the weight its forward used).
 */
function stackOf(layers: readonly Linear[], dtype: "f16" | "f32", n: number, keepNew: boolean): Stack {
  const gpu = layers[0].weight.gpu;
  const total = layers.reduce((a, l) => a + l.outFeatures, 0);
  const biased = layers.some((l) => l.bias);
  const old = stacks.get(layers[0]);
  if (
    old && old.layers.length === layers.length && old.layers.every((l, i) => l === layers[i]) &&
    old.weight.dtype === dtype && old.weight.shape[0] === total && old.weight.shape[1] === n &&
    (old.bias !== null) === biased && old.discards === gpu.stream.discards &&
    old.weight.exclusive && (old.bias?.exclusive ?? true)
  ) return old;
  if (old) disposeStack(old);
  stacks.delete(layers[0]);
  const kept = <T extends Tensor | null>(t: T): T => t && keepNew ? keep(t) : t;
  const stack: Stack = {
    layers: [...layers],
    weight: kept(Tensor.empty(gpu, [total, n], dtype, "qkv_stack.weight")),
    bias: kept(biased ? Tensor.empty(gpu, [total], "f32", "qkv_stack.bias") : null),
    rows: layers.map(() => null),
    biasRows: layers.map(() => null),
    discards: gpu.stream.discards,
  };
  if (keepNew) stacks.set(layers[0], stack);
  return stack;
}

function disposeStack(stack: Stack): void {
  stack.weight.dispose(); // a tape that saved it keeps its own reference
  stack.bias?.dispose();
}

/** Free the stacks that {@link fusedProjection} keeps for lists beginning at these layers. */
export function releaseStacks(layers: Iterable<Linear>): void {
  for (const l of layers) {
    const stack = stacks.get(l);
    if (stack) disposeStack(stack);
    stacks.delete(l);
  }
}
