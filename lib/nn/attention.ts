/**
 * Multi-head self-attention over projected queries, keys and values laid out [B, T, heads·D]
 * (what the q/k/v linear layers give), with optional rotary embeddings, grouped-query heads,
 * a causal mask, a key padding mask and dropout on the probabilities; and the padding mask
 * built from a batch's attention_mask.
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import {
  attention,
  type DropoutSpec,
  packedAttention,
  reshape,
  rope,
  type RopeTables,
  Tensor,
} from "../tensor/mod.ts";

/** Options of {@link multiHeadAttention}. */
export interface MultiHeadOptions {
  /** Query heads H. */
  numHeads: number;
  /** Key/value heads (grouped-query attention; divides H). Default H. */
  numKvHeads?: number;
  /** Size D of one head. */
  headDim: number;
  /** Decoder (causal) attention. */
  causal?: boolean;
  /** With `causal`: a query sees at most this many keys, its own and those before (sliding window). */
  window?: number;
  /** i32 [B, T]: 0 hides a padding key (see {@link paddingMask}). */
  mask?: Tensor | null;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** Rotate queries and keys by position (LLaMA). */
  rope?: RopeTables;
  /**
   * Dropout on the attention probabilities [B, H, T, T] (train mode: GPT-2's attn_pdrop,
   * LLaMA's attention_dropout, BERT's attention_probs_dropout_prob).
   */
  probsDropout?: DropoutSpec | null;
}

/**
 * `softmax(q·kᵀ·scale + masks)·v` per head: q [B, T, H·D], k and v [B, S, Hkv·D] →
 * [B, T, H·D] (heads concatenated, ready for the output projection; S = T for
 * self-attention). The heads are read and written in place ([B, T, H, D] views), never
 * permuted.
 */
export function multiHeadAttention(q: Tensor, k: Tensor, v: Tensor, opts: MultiHeadOptions): Tensor {
  const { numHeads: h, headDim: d } = opts;
  const hkv = opts.numKvHeads ?? h;
  const [b, t] = q.shape;
  const heads = (x: Tensor, n: number, rotate: boolean) => {
    const x4 = reshape(x, [b, x.shape[1], n, d]);
    return rotate && opts.rope ? rope(x4, opts.rope, "bthd") : x4;
  };
  const [q4, k4, v4] = [heads(q, h, true), heads(k, hkv, true), heads(v, hkv, false)];
  const { causal, window, mask, scale, probsDropout } = opts;
  const out = attention(q4, k4, v4, { causal, window, mask, scale, layout: "bthd", probsDropout });
  return reshape(out, [b, t, h * d]);
}

/**
 * {@link multiHeadAttention} over q, k and v packed in one [B, T, (H + 2·Hkv)·D] tensor (GPT-2's
 * c_attn output), read in place: no split. Rotary embeddings need separate q and k.
 */
export function packedMultiHeadAttention(qkv: Tensor, opts: Omit<MultiHeadOptions, "rope">): Tensor {
  const [b, t] = qkv.shape;
  const { numHeads: heads, numKvHeads: kvHeads, headDim, causal, mask, scale, probsDropout } = opts;
  const out = packedAttention(qkv, { heads, kvHeads, headDim, causal, mask, scale, probsDropout });
  return reshape(out, [b, t, heads * headDim]);
}

/**
 * The key padding mask of a batch: `attentionMask` (1 real, 0 padding; row-major [b, t]) as an
 * i32 tensor, or null when there is none or nothing is masked (the unmasked kernels are used).
 */
export function paddingMask(
  gpu: Gpu,
  attentionMask: Int32Array | undefined,
  b: number,
  t: number,
): Tensor | null {
  if (!attentionMask) return null;
  if (attentionMask.length !== b * t) {
    throw new Error(`attention_mask has ${attentionMask.length} values, expected ${b}×${t} = ${b * t}`);
  }
  if (attentionMask.every((m) => m !== 0)) return null;
  return Tensor.from(gpu, attentionMask, [b, t]);
}
