/**
 * A transformer's feed-forward block, `down(act(up(x)))`, with the activation in the products'
 * epilogues: the up-projection writes the pre-activation and act(·) in one pass, and backward's
 * product through the down-projection's weight multiplies by act′ as it stores. That removes
 * the activation's own passes over the [tokens, hidden] tensors (two forward, three backward).
 * @module
 */
import type { Activation } from "../io/hf_config.ts";
import { bindingLimit } from "../gpu/bands.ts";
import { encodeMatmul } from "../linalg/matmul.ts";
import { type DropoutRows, isGradEnabled, linear, noGrad, record, reshape, Tensor } from "../tensor/mod.ts";
import { linearInputGradient, operandB } from "../tensor/ops/matmul.ts";
import { activate } from "./activation.ts";
import { FUSIONS } from "./fusions.ts";
import type { FoldedUpdate, Linear } from "./linear.ts";

/**
 * `down(act(up(x)))` for x [..., in]: fused (see the module doc) when both layers have frozen
 * weights and biases and no adapter or one that folds into its weight for this many tokens
 * (SSH, FourierFT); else the layers and the activation one by one. The same values either way.
 * `rows`: x holds only these positions of the block's usual input ({@link Linear.forward}).
 */
export function feedForward(
  up: Linear,
  down: Linear,
  act: Activation,
  x: Tensor,
  rows?: DropoutRows,
): Tensor {
  return fused(up, down, act, x) ?? down.forward(activate(up.forward(x, rows), act), rows);
}

function fused(up: Linear, down: Linear, act: Activation, x: Tensor): Tensor | null {
  const n = x.shape[x.shape.length - 1];
  const hidden = up.outFeatures, out = down.outFeatures;
  const frozen = (l: Linear) =>
    !l.weight.requiresGrad && !l.bias?.requiresGrad && (!l.adapter || l.adapter.fold);
  if (!FUSIONS.ffn || x.dtype !== "f32" || x.size === 0) return null;
  if (up.inFeatures !== n || down.inFeatures !== hidden) return null;
  if (!frozen(up) || !frozen(down)) return null;
  const tokens = x.size / n, gpu = x.gpu;
  // products with an activation epilogue run in one band: each of their operands must fit a binding
  const limit = bindingLimit(gpu);
  if (4 * Math.max(up.weight.size, down.weight.size, tokens * Math.max(n, hidden)) > limit) return null;
  // an adapted layer's weight is a copy with ΔW folded in
  const folds: (FoldedUpdate | null)[] = [];
  const weights: Tensor[] = [];
  for (const l of [up, down]) {
    if (!l.adapter) {
      weights.push(l.weight);
      folds.push(null);
      continue;
    }
    const w = Tensor.empty(gpu, l.weight.shape);
    const update = l.adapter.fold!(l, tokens, w, 0);
    weights.push(w);
    folds.push(update);
    if (!update) {
      for (const [i, t] of weights.entries()) if (folds[i] || t === w) t.dispose();
      return null;
    }
  }
  const [w1, w2] = weights;
  const params = folds.flatMap((u) => u ? [u.param] : []);
  // the pre-activation is kept only for a backward pass
  const track = isGradEnabled() && [x, ...params].some((t) => t.requiresGrad);
  const hiddenShape = [...x.shape.slice(0, -1), hidden];
  const post = Tensor.empty(gpu, hiddenShape);
  const pre = track ? Tensor.empty(gpu, hiddenShape) : null;
  encodeMatmul(gpu, x.buffer, w1.buffer, post.buffer, tokens, hidden, n, {
    transB: up.layout === "out_in",
    ...operandB(w1),
    bias: up.bias?.buffer,
    activation: { kind: act, pre: pre?.buffer },
  });
  const y = noGrad(() => linear(post, w2, down.bias, { weightLayout: down.layout }));
  if (pre) {
    record(
      "feed_forward",
      y,
      [x, ...params],
      [x, pre, post, w1, w2],
      (g, [xs, ps, hs, w1s, w2s], need, acc) => {
        // ∂L/∂pre = (g·W2)·act′(pre), in the product's epilogue
        const gPre = Tensor.empty(gpu, ps.shape);
        encodeMatmul(gpu, g.buffer, w2s.buffer, gPre.buffer, tokens, hidden, out, {
          transB: down.layout === "in_out",
          ...operandB(w2s),
          activation: { kind: act, pre: ps.buffer, backward: true },
        });
        const grads: (Tensor | null)[] = [need[0] ? linearInputGradient(gPre, w1s, up.layout, acc[0]) : null];
        // the adapters' gradients: up's from (x, ∂L/∂pre), down's from (act(pre), g)
        const rows = (t: Tensor) => reshape(t, [tokens, t.shape[t.shape.length - 1]]);
        const pairs = [[xs, gPre], [hs, g]] as const;
        let p = 0;
        folds.forEach((u, i) => {
          if (u) grads.push(need[++p] ? u.gradient(rows(pairs[i][0]), rows(pairs[i][1]), new Map()) : null);
        });
        return grads;
      },
    );
  }
  for (const [i, w] of weights.entries()) if (folds[i]) w.dispose(); // the tape keeps its own
  pre?.dispose();
  post.dispose();
  return y;
}
