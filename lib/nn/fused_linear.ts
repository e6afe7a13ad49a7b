/**
 * Several linear layers of one input as one product (attention's query, key and value): their
 * weights, with any adapter's ΔW folded in, stacked into one [ΣM, N] weight. On a GPU a
 * 4096×2304 output fills the device with large tiles where three 4096×768 ones cannot, and
 * backward's input gradient is one product over K = ΣM instead of three accumulating ones.
 * @module
 */
import { linear, noGrad, record, reshape, slice, Tensor } from "../tensor/mod.ts";
import { bindingLimit } from "../gpu/bands.ts";
import { encodeMatmul } from "../linalg/matmul.ts";
import { copyAll, stridedCopy } from "../tensor/ops/copy.ts";
import { linearInputGradient } from "../tensor/ops/matmul.ts";
import { FUSIONS } from "./fusions.ts";
import type { FoldedUpdate, Linear } from "./linear.ts";

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
 * adapters as through the separate layers.
 */
export function fusedProjection(layers: readonly Linear[], x: Tensor): Tensor | null {
  const n = x.shape[x.shape.length - 1];
  if (!FUSIONS.qkv || layers.length < 2 || x.dtype !== "f32" || x.shape.length < 2 || x.size === 0) {
    return null;
  }
  const fits = layers.every((l) =>
    l.layout === "out_in" && l.inFeatures === n && !l.weight.requiresGrad && !l.bias?.requiresGrad &&
    l.weight.size <= FUSE_MAX_ELEMENTS
  );
  if (!fits) return null;
  const tokens = x.size / n, gpu = x.gpu;
  const sizes = layers.map((l) => l.outFeatures);
  const total = sizes.reduce((a, b) => a + b, 0);
  // the stacked weight and output are read whole (by the attention): each must fit a binding
  if (4 * total * Math.max(n, tokens) > bindingLimit(gpu)) return null;
  // f16 weights stay f16 unless an adapter may fold ΔW into them (in f32)
  const f16 = layers.every((l) => !l.adapter?.fold && l.weight.dtype === "f16");
  const weight = Tensor.empty(gpu, [total, n], f16 ? "f16" : "f32");
  const firstRows = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  // folding adapters write W + ΔW themselves; the other weights and the biases are copied in
  // after them, so that the copies end the compute pass once and not between the folds
  const folds: (FoldedUpdate | null)[] = layers.map((l, i) =>
    l.adapter?.fold?.(l, tokens, weight, firstRows[i] * n) ?? null
  );
  layers.forEach((l, i) => {
    if (!folds[i]) copyAll(l.weight, weight, firstRows[i] * n);
  });
  let bias: Tensor | null = null;
  if (layers.some((l) => l.bias)) {
    const stacked = bias = Tensor.empty(gpu, [total]);
    layers.forEach((l, i) => {
      if (l.bias) copyAll(l.bias, stacked, firstRows[i]);
      else gpu.stream.clear(stacked.buffer, firstRows[i] * 4, l.outFeatures * 4);
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
  weight.dispose(); // the tape keeps its own reference
  bias?.dispose();
  return y;
}
