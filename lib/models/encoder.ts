/**
 * Pieces the encoder families (BERT, RoBERTa, ViT) share: bidirectional multi-head
 * self-attention with HF's attention-probability dropout (applied in train mode only), the
 * first-token ([CLS] / <s>) vector of a sequence, and what a last layer computed at that
 * token alone needs (its heads read nothing else).
 * @module
 */
import { multiHeadAttention, packedMultiHeadAttention } from "../nn/attention.ts";
import { fusedProjection } from "../nn/fused_linear.ts";
import type { Linear } from "../nn/linear.ts";
import {
  type DropoutRows,
  type DropoutSpec,
  kvPackedAttention,
  reshape,
  slice,
  type Tensor,
} from "../tensor/mod.ts";

/** Options of {@link encoderSelfAttention}. */
export interface EncoderAttentionOptions {
  numHeads: number;
  headDim: number;
  /** i32 [B, T]: 0 hides a padding key (lib/nn/attention.ts `paddingMask`). */
  mask: Tensor | null;
  /** Dropout on the attention probabilities [B, H, T, T] (train mode); null in eval mode. */
  probsDropout: DropoutSpec | null;
  /**
   * Compute the output at the first position alone (queries from there, keys and values from
   * all of x) → [B, 1, H·D]; `probsDropout` then needs its `rows`.
   */
  at?: FirstPosition | null;
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
  const { numHeads, headDim, mask, probsDropout, at } = opts;
  if (at) {
    const q = query.forward(at.x0, at.rows);
    const kv = fusedProjection([key, value], x);
    if (!kv) {
      return multiHeadAttention(q, key.forward(x), value.forward(x), {
        numHeads,
        headDim,
        mask,
        probsDropout,
      });
    }
    const heads = kvPackedAttention(q, kv, { heads: numHeads, headDim, mask, probsDropout });
    return reshape(heads, [x.shape[0], 1, numHeads * headDim]);
  }
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

/**
 * A layer computed at the first position of each sequence alone (a last layer whose head reads
 * only [CLS]): its input there, and the rows its dropouts draw (`DropoutKey.rows`), so that it
 * drops, and computes, what the whole layer does at that position.
 */
export interface FirstPosition {
  /** The layer input's first rows [B, 1, H]. */
  x0: Tensor;
  rows: DropoutRows;
}

/** {@link FirstPosition} of a layer input x [B, T, H]. */
export function firstPosition(x: Tensor): FirstPosition {
  const [b, t] = x.shape;
  return { x0: slice(x, 1, 0, 1), rows: { batch: b, length: t } };
}
