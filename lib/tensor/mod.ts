/**
 * Autograd-lite tensors on WebGPU: a Tensor with pooled storage, a tape walked iteratively in
 * topological order, scope-based lifetimes, and the ops transformer fine-tuning needs. Every
 * op and backward() only encode work on `gpu.stream`; nothing is submitted until a flush or
 * a readback.
 *
 * ```ts
 * import { getGpu } from "../gpu/mod.ts";
 * import * as T from "./mod.ts";
 * const gpu = await getGpu();
 * const w = T.Tensor.from(gpu, [0.1, -0.2, 0.3, 0.4], [2, 2], { requiresGrad: true });
 * const x = T.Tensor.from(gpu, [1, 2, 3, 4, 5, 6], [3, 2]);
 * const labels = T.Tensor.from(gpu, new Int32Array([0, 1, -100]), [3]);
 * const loss = T.tidy(() => T.crossEntropy(T.gelu(T.linear(x, w)), labels)); // temporaries freed
 * loss.backward(); // w.grad now holds dloss/dw (encoded, not yet run)
 * console.log(await loss.item()); // submits and reads back
 * ```
 *
 * New op families attach their gradient rule with {@link record}.
 * @module
 */
export { type DType, isQuantized, Tensor, type TensorOptions } from "./tensor.ts";
export { dequantizeInto, quantize } from "./ops/quant.ts";
export { QUANT_GROUP, type QuantKind } from "./quant_format.ts";
export { type GradRule, isGradEnabled, noGrad, record } from "./autograd.ts";
export { keep, tidy } from "./scope.ts";
export { checkpoint, currentReplay } from "./checkpoint.ts";
export { type Shape } from "./shape.ts";
export {
  add,
  addScalar,
  affine,
  div,
  exp,
  gelu,
  log,
  log1p,
  mul,
  neg,
  relu,
  scale,
  sigmoid,
  silu,
  sub,
  tanh,
} from "./ops/elementwise.ts";
export { argmax, broadcastTo, mean, sum, sumTo } from "./ops/reduce.ts";
export { cast, concat, permute, reshape, slice, split, transpose } from "./ops/layout.ts";
export { linear, matmul, type MatmulOpOptions } from "./ops/matmul.ts";
export { layerNorm, residualLayerNorm, rmsNorm } from "./ops/norm.ts";
export { maskedSoftmax, softmax, type SoftmaxMask } from "./ops/softmax.ts";
export {
  attention,
  type AttentionOptions,
  type HeadLayout,
  kvPackedAttention,
  type KvPackedAttentionOptions,
  packedAttention,
  type PackedAttentionOptions,
  prefixAttention,
  type PrefixAttentionOptions,
  rope,
  type RopeTables,
  ropeTables,
} from "./ops/attention.ts";
export {
  ATTENTION_PATH,
  type AttentionPath,
  type AttentionPathSettings,
  useFusedAttention,
  withAttentionPath,
} from "./ops/attention_fused.ts";
export { embedding, groupIds, splitRuns } from "./ops/embedding.ts";
export { crossEntropy, type CrossEntropyOptions, IGNORE_INDEX } from "./ops/loss.ts";
export {
  dropout,
  dropoutAdd,
  dropoutFactors,
  type DropoutKey,
  dropoutMaskKey,
  type DropoutRows,
  type DropoutSpec,
  dropoutThreshold,
} from "./ops/dropout.ts";
export { patchEmbed } from "./ops/conv.ts";
