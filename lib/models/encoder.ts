/**
 * Pieces the encoder families (BERT, RoBERTa, ViT) share: bidirectional multi-head
 * self-attention with HF's attention-probability dropout (applied in train mode only), and
 * the first-token ([CLS] / <s>) vector of a sequence.
 * @module
 */
import { multiHeadAttention, packedMultiHeadAttention } from "../nn/attention.ts";
import { fusedProjection } from "../nn/fused_linear.ts";
import type { Linear } from "../nn/linear.ts";
import { type DropoutSpec, reshape, slice, type Tensor } from "../tensor/mod.ts";

/** Options of {@link encoderSelfAttention}. */
export interface EncoderAttentionOptions {
  numHeads: number;
  headDim: number;
  /** i32 [B, T]: 0 hides a padding key (lib/nn/attention.ts `paddingMask`). */
  mask: Tensor | null;
  /** Dropout on the attention probabilities [B, H, T, T] (train mode); null in eval mode. */
  probsDropout: DropoutSpec | null;
}

/**
 * Self-attention of x [B, T, H·D] through the query, key and value layers: `softmax(q·kᵀ/√D +
 * mask)·v` per head → [B, T, H·D] (heads concatenated), no causal mask. The three projections
 * run as one product when they allow it (`fusedProjection`), read in place by the attention.
 * Padded queries attend to the real keys like any other position, as in transformers, so
 * hidden states at padded positions match too.
 */
export function encoderSelfAttention(
  query: Linear,
  key: Linear,
  value: Linear,
  x: Tensor,
  opts: EncoderAttentionOptions,
): Tensor {
  const { numHeads, headDim, mask, probsDropout } = opts;
  const qkv = fusedProjection([query, key, value], x);
  if (qkv) return packedMultiHeadAttention(qkv, { numHeads, headDim, mask, probsDropout });
  const [q, k, v] = [query, key, value].map((l) => l.forward(x));
  return multiHeadAttention(q, k, v, { numHeads, headDim, mask, probsDropout });
}

/** hidden [B, T, H] → [B, H]: each row's first position (gradients flow back). */
export function firstToken(hidden: Tensor): Tensor {
  const [b, , h] = hidden.shape;
  return reshape(slice(hidden, 1, 0, 1), [b, h]);
}
