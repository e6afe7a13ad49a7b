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
  maskedSoftmax,
  matmul,
  permute,
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
  /** i32 [B, T]: 0 hides a padding key (see {@link paddingMask}). */
  mask?: Tensor | null;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** Rotate queries and keys by position (LLaMA). */
  rope?: RopeTables;
  /**
   * Dropout on the attention probabilities (train mode: GPT-2's attn_pdrop, LLaMA's
   * attention_dropout), applied to probs [B·Hkv, (H/Hkv)·T, T]; absent, attention runs as one
   * fused op.
   */
  probsDropout?: ((probs: Tensor) => Tensor) | null;
}

/**
 * `softmax(q·kᵀ·scale + masks)·v` per head: q [B, T, H·D], k and v [B, T, Hkv·D] →
 * [B, T, H·D] (heads concatenated, ready for the output projection).
 */
export function multiHeadAttention(q: Tensor, k: Tensor, v: Tensor, opts: MultiHeadOptions): Tensor {
  const { numHeads: h, headDim: d } = opts;
  const hkv = opts.numKvHeads ?? h;
  const [b, t] = q.shape;
  const heads = (x: Tensor, n: number, rotate: boolean) => {
    let x4 = reshape(x, [b, t, n, d]);
    if (rotate && opts.rope) x4 = rope(x4, opts.rope, "bthd");
    return permute(x4, [0, 2, 1, 3]);
  };
  const [q4, k4, v4] = [heads(q, h, true), heads(k, hkv, true), heads(v, hkv, false)];
  const { causal, mask, scale } = opts;
  const out = opts.probsDropout
    ? unfusedAttention(q4, k4, v4, { causal, mask, scale: scale ?? 1 / Math.sqrt(d) }, opts.probsDropout)
    : attention(q4, k4, v4, { causal, mask, scale });
  return reshape(permute(out, [0, 2, 1, 3]), [b, t, h * d]);
}

/**
 * The attention op's computation spelled out (two products around a masked softmax, query
 * heads of one key/value head stacked as rows), with `dropout` on the probabilities.
 */
function unfusedAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: { causal?: boolean; mask?: Tensor | null; scale: number },
  dropout: (probs: Tensor) => Tensor,
): Tensor {
  const [b, h, t, d] = q.shape, hkv = k.shape[1];
  const group = h / hkv;
  const scores = matmul(reshape(q, [b * hkv, group * t, d]), reshape(k, [b * hkv, t, d]), {
    transB: true,
    alpha: opts.scale,
  });
  const probs = maskedSoftmax(scores, 1, { causal: opts.causal, padding: opts.mask, queries: t });
  return reshape(matmul(dropout(probs), reshape(v, [b * hkv, t, d])), [b, h, t, d]);
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
