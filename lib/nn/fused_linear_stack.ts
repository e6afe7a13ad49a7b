/**
 * The stacked weight [ΣM, N] and bias [ΣM] that `fusedProjection` (fused_linear.ts) multiplies
 * by, kept across forwards per list of layers and brought up to date: frozen rows copied again
 * only when their tensor changed, a folding adapter's W + ΔW written again only when its
 * coefficients did.
 * @module
 */
import { keep, Tensor } from "../tensor/mod.ts";
import { copyAll } from "../tensor/ops/copy.ts";
import type { FoldedUpdate, Linear, LinearAdapter } from "./linear.ts";

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
export function stackOf(layers: readonly Linear[], dtype: "f16" | "f32", n: number, keepNew: boolean): Stack {
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

/**
 * Bring `stack`'s rows up to `layers`' weights and biases for `tokens` tokens of width `n`
 * (layer i's rows from `firstRows[i]`), and return each layer's folded update (null: its adapter,
 * if any, did not fold).
 */
export function updateStack(
  stack: Stack,
  layers: readonly Linear[],
  n: number,
  tokens: number,
  firstRows: readonly number[],
): (FoldedUpdate | null)[] {
  const { weight, bias } = stack, gpu = weight.gpu;
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
  return folds;
}

function disposeStack(stack: Stack): void {
  stack.weight.dispose(); // a tape that saved it keeps its own reference
  stack.bias?.dispose();
}

/** Free the stacks that `fusedProjection` keeps for lists beginning at these layers. */
export function releaseStacks(layers: Iterable<Linear>): void {
  for (const l of layers) {
    const stack = stacks.get(l);
    if (stack) disposeStack(stack);
    stacks.delete(l);
  }
}

/** Free `stack` unless it is the one kept for its layers (a tape keeps its own reference). */
export function disposeUnkept(stack: Stack): void {
  if (stacks.get(stack.layers[0]) !== stack) disposeStack(stack);
}
