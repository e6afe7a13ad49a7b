/**
 * GPT-2 (GPT2LMHeadModel, GPT2ForSequenceClassification, GPT2ForTokenClassification, GPT2Model): learned absolute
 * positions, pre-LayerNorm blocks of causal self-attention and a GELU MLP, Conv1D weights
 * stored (in, out), a final LayerNorm, and the LM head tied to the token embedding.
 * Dropout (train mode) follows embd_pdrop, attn_pdrop and resid_pdrop.
 * @module
 */
import type { Gpt2Config } from "../io/hf_config.ts";
import { feedForward } from "../nn/feed_forward.ts";
import { packedMultiHeadAttention, paddingMask } from "../nn/attention.ts";
import { Embedding } from "../nn/embedding.ts";
import type { Linear } from "../nn/linear.ts";
import { LayerNorm } from "../nn/norm.ts";
import { add, type DropoutSpec, kvPackedAttention, reshape, slice, Tensor } from "../tensor/mod.ts";
import { BaseModel, decoderClassifierDropout, rawNumber, tokenInputs } from "./base.ts";
import { atPooled, decoderHead, type PooledPositions, pooledPositions } from "./decoder_head.ts";
import { beginCached, KvCache, type KvCacheDtype } from "./kv_cache.ts";
import type { Batch, ForwardOptions, ModelOutput, ModelTask } from "./model.ts";
import type { BuildContext, Family } from "./registry.ts";

/** One transformer block's layers. */
interface Block {
  ln1: LayerNorm;
  attn: Linear;
  attnProj: Linear;
  ln2: LayerNorm;
  fc: Linear;
  fcProj: Linear;
}

/** The head's module by task. */
const HEADS: Partial<Record<ModelTask, string>> = {
  "causal-lm": "lm_head",
  "seq-cls": "score",
  "token-cls": "classifier",
};

/** A loaded GPT-2. */
export class Gpt2Model extends BaseModel {
  declare readonly config: Gpt2Config;
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly blocks: Block[] = [];
  readonly lnF: LayerNorm;
  /** lm_head (causal-lm, tied to wte), score (seq-cls) or classifier (token-cls); null for the bare model. */
  readonly head: Linear | null;

  constructor(ctx: BuildContext) {
    super("gpt2", ctx.config, ctx);
    const c = this.config, p = ctx.shapes.basePrefix, params = this.parameters, eps = c.layerNormEps;
    this.wte = Embedding.from(params, `${p}wte.weight`);
    this.wpe = Embedding.from(params, `${p}wpe.weight`);
    for (let i = 0; i < c.numLayers; i++) {
      const l = `${p}h.${i}`;
      this.blocks.push({
        ln1: LayerNorm.from(params, `${l}.ln_1`, eps),
        attn: this.linear(`${l}.attn.c_attn`),
        attnProj: this.linear(`${l}.attn.c_proj`),
        ln2: LayerNorm.from(params, `${l}.ln_2`, eps),
        fc: this.linear(`${l}.mlp.c_fc`),
        fcProj: this.linear(`${l}.mlp.c_proj`),
      });
    }
    this.lnF = LayerNorm.from(params, `${p}ln_f`, eps);
    const head = HEADS[ctx.task];
    this.head = head ? this.linear(head) : null;
  }

  forward(batch: Batch, options: ForwardOptions = {}): ModelOutput {
    const c = this.config;
    const { ids, host, b, t } = tokenInputs(batch, "gpt2", c.maxPositions);
    // a classifier reads each row's last token alone: the last block need not compute the others
    const pooled = pooledPositions(this.gpu, this.task, c, options, batch, host, b, t);
    this.nextStep();
    const d = c.headDim;
    const cache = options.cache;
    // with a cache, the padding of the keys (cached ones included) is the cache's to mask
    const mask = cache ? null : paddingMask(this.gpu, batch.attentionMask, b, t);
    if (cache) beginCached(cache, "gpt2", this.task, batch.attentionMask, b, t);
    // generation: each row's own positions (a left-padded prompt's start at its first real token)
    const positions = cache
      ? Tensor.from(this.gpu, cache.positions, [b, t])
      : Tensor.from(this.gpu, Int32Array.from({ length: t }, (_, i) => i), [t]);
    const embdDrop = rawNumber(c, "embd_pdrop", 0.1), residDrop = rawNumber(c, "resid_pdrop", 0.1);
    const attnDrop = rawNumber(c, "attn_pdrop", 0.1);
    let x = this.dropout(add(this.wte.forward(ids), this.wpe.forward(positions)), embdDrop, 0);
    this.blocks.forEach((blk, i) => {
      const input = x;
      // the key mask through runLayer, which saves it for a checkpoint's rerun (the caller may free it)
      const last = pooled && i === this.blocks.length - 1;
      x = this.runLayer(input, mask, Object.values(blk), (prev, mask, [keyMask]) => {
        const at = last ? { ...pooled, keyMask } : null;
        const qkv = blk.attn.forward(blk.ln1.forward(prev));
        let scale = c.scaleAttnWeights ? 1 / Math.sqrt(d) : 1;
        if (c.scaleAttnByInverseLayerIdx) scale /= i + 1;
        const probsDropout = this.dropoutSpec(attnDrop, 3 * i + 1, at?.rows);
        const a = at
          ? this.pooledAttention(qkv, at, scale, probsDropout)
          : cache
          ? this.cachedAttention(cache, i, qkv, scale)
          : packedMultiHeadAttention(qkv, {
            numHeads: c.numHeads,
            headDim: d,
            causal: true,
            mask,
            scale,
            probsDropout,
          });
        const residual = at ? atPooled(prev, at) : prev;
        const y = this.dropoutAdd(
          blk.attnProj.forward(a, at?.rows),
          residual,
          residDrop,
          3 * i + 2,
          at?.rows,
        );
        const m = feedForward(blk.fc, blk.fcProj, c.activation, blk.ln2.forward(y), at?.rows);
        return this.dropoutAdd(m, y, residDrop, 3 * i + 3, at?.rows);
      }, last ? [pooled.keyMask] : []);
      input.dispose(); // the block's input is no longer needed (saved activations hold their own views)
    });
    cache?.commit();
    const hidden = this.lnF.forward(x);
    if (this.task === "token-cls") {
      return this.tokenClassify(this.head!, hidden, batch, decoderClassifierDropout(c), 3 * c.numLayers + 1);
    }
    return decoderHead(this.task, c, this.head, hidden, batch, host, pooled, options);
  }

  /** A key/value cache for generation ({@link ForwardOptions.cache}), stored as `dtype` (default f32). */
  newCache(dtype?: KvCacheDtype): KvCache {
    return KvCache.for(this.gpu, this.config, dtype);
  }

  /**
   * The new positions' queries (c_attn's output qkv [B, T, 3·H]) over the cached keys and values
   * of block `i` and their own → [B, T, H].
   */
  private cachedAttention(cache: KvCache, i: number, qkv: Tensor, scale: number): Tensor {
    const c = this.config, [b, t] = qkv.shape, hs = c.hiddenSize;
    const q = reshape(slice(qkv, 2, 0, hs), [b, t, c.numHeads, c.headDim]);
    const out = cache.attend(i, q, { x: qkv, at: hs }, { x: qkv, at: 2 * hs }, { causal: true, scale });
    return reshape(out, [b, t, hs]);
  }

  /**
   * Attention at the pooled positions alone: their queries over every key and value of c_attn's
   * output qkv [B, T, 3·H] → [B, 1, H].
   */
  private pooledAttention(
    qkv: Tensor,
    at: PooledPositions,
    scale: number,
    probsDropout: DropoutSpec | null,
  ): Tensor {
    const c = this.config, [b] = qkv.shape;
    const q = slice(atPooled(qkv, at), 2, 0, c.hiddenSize);
    const opts = {
      heads: c.numHeads,
      headDim: c.headDim,
      keysAt: c.numHeads,
      mask: at.keyMask,
      scale,
      probsDropout,
    };
    return reshape(kvPackedAttention(q, qkv, opts), [b, 1, c.hiddenSize]);
  }
}

/** The gpt2 family for loadModel's registry. */
export const gpt2Family: Family = {
  architectures: {
    "causal-lm": "GPT2LMHeadModel",
    "seq-cls": "GPT2ForSequenceClassification",
    "token-cls": "GPT2ForTokenClassification",
    base: "GPT2Model",
  },
  build: (ctx) => new Gpt2Model(ctx),
};
