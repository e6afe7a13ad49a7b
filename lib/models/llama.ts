/**
 * LLaMA (LlamaForCausalLM, LlamaForSequenceClassification, LlamaForTokenClassification,
 * LlamaModel): RMSNorm, rotary position embeddings (theta from the config, HF's rotate_half
 * convention), grouped-query attention, a SwiGLU MLP (`down(act(gate(x)) · up(x))`), biases only
 * where the config's attention_bias / mlp_bias ask for them, and an untied lm_head unless
 * tie_word_embeddings. Dropout (train mode) follows attention_dropout (on the attention
 * probabilities) and, before a token classifier's `score`, classifier_dropout.
 *
 * Mistral, Qwen2, Qwen3 and Phi-3 (their ForCausalLM, ForSequenceClassification,
 * ForTokenClassification and Model classes) are built here too: Qwen2 has biases on q/k/v, Qwen3
 * an RMSNorm over each query and key head before RoPE (q_norm, k_norm), Phi-3 one projection for
 * q, k and v (qkv_proj) and one for gate and up (gate_up_proj), dropout on each block's output
 * (resid_pdrop) and RoPE on part of each head (partial_rotary_factor, LongRoPE); and they may slide
 * their attention over a window of keys (every layer of Mistral and Phi-3, some of Qwen2's), as
 * transformers' sliding-window mask does.
 * @module
 */
import { type LlamaConfig, type LlamaModelType, maxTokens } from "../io/hf_config.ts";
import { activate } from "../nn/activation.ts";
import { multiHeadAttention, paddingMask } from "../nn/attention.ts";
import { Embedding } from "../nn/embedding.ts";
import type { Linear } from "../nn/linear.ts";
import { RmsNorm } from "../nn/norm.ts";
import { ropeInverseFrequencies, ropeScale } from "../nn/rope.ts";
import {
  attention,
  type DropoutRows,
  type DropoutSpec,
  embedding,
  mul,
  reshape,
  rope,
  type RopeTables,
  ropeTables,
  slice,
  Tensor,
} from "../tensor/mod.ts";
import { BaseModel, decoderClassifierDropout, rawNumber, tokenInputs } from "./base.ts";
import { atPooled, decoderHead, type PooledPositions, pooledPositions } from "./decoder_head.ts";
import { beginCached, CacheRotationError, KvCache, type KvCacheDtype } from "./kv_cache.ts";
import type { Batch, ForwardOptions, ModelOutput, ModelTask } from "./model.ts";
import type { BuildContext, Family } from "./registry.ts";
import { SUPPORTED_ARCHITECTURES } from "./shapes.ts";

/** One decoder layer's layers. */
interface Layer {
  inputNorm: RmsNorm;
  /** q, k and v: three projections, or Phi-3's qkv_proj (q's rows, then k's, then v's). */
  attnIn: { q: Linear; k: Linear; v: Linear } | { qkv: Linear };
  o: Linear;
  postNorm: RmsNorm;
  /** Qwen3's RMSNorm of each query head (q_norm) and key head (k_norm); absent elsewhere. */
  qNorm?: RmsNorm;
  kNorm?: RmsNorm;
  /** gate and up: two projections, or Phi-3's gate_up_proj (gate's rows, then up's). */
  mlpIn: { gate: Linear; up: Linear } | { gateUp: Linear };
  down: Linear;
}

/** The linear layers and norms of a {@link Layer} (runLayer's `parts`). */
function layerParts(layer: Layer): (Linear | RmsNorm)[] {
  const norms = [layer.inputNorm, layer.postNorm, layer.qNorm, layer.kNorm].filter((n) => n !== undefined);
  return [...norms, ...Object.values(layer.attnIn), layer.o, ...Object.values(layer.mlpIn), layer.down];
}

/** The queries, keys and values of `a` [B, T, H] ([B, T, heads·D] each) from one layer's projections. */
function projectQkv(layer: Layer, a: Tensor, c: LlamaConfig): { q: Tensor; k: Tensor; v: Tensor } {
  const attnIn = layer.attnIn;
  if ("q" in attnIn) return { q: attnIn.q.forward(a), k: attnIn.k.forward(a), v: attnIn.v.forward(a) };
  const qkv = attnIn.qkv.forward(a), q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  return { q: slice(qkv, 2, 0, q), k: slice(qkv, 2, q, q + kv), v: slice(qkv, 2, q + kv, q + 2 * kv) };
}

/** `act(gate(m)) · up(m)` from one layer's projections (`rows`: the pooled layer's dropout rows). */
function gatedInput(layer: Layer, m: Tensor, c: LlamaConfig, rows?: DropoutRows): Tensor {
  const mlpIn = layer.mlpIn;
  if ("gate" in mlpIn) {
    return mul(activate(mlpIn.gate.forward(m, rows), c.activation), mlpIn.up.forward(m, rows));
  }
  const gateUp = mlpIn.gateUp.forward(m, rows), width = c.intermediateSize;
  return mul(activate(slice(gateUp, 2, 0, width), c.activation), slice(gateUp, 2, width, 2 * width));
}

/** The head's module by task. */
const HEADS: Partial<Record<ModelTask, string>> = {
  "causal-lm": "lm_head",
  "seq-cls": "score",
  "token-cls": "score",
};

/** A loaded LLaMA. */
export class LlamaModel extends BaseModel {
  declare readonly config: LlamaConfig;
  readonly embed: Embedding;
  readonly layers: Layer[] = [];
  readonly norm: RmsNorm;
  /** lm_head (causal-lm) or score (seq-cls, token-cls); null for the bare model. */
  readonly head: Linear | null;

  constructor(ctx: BuildContext) {
    super(ctx.config.modelType, ctx.config, ctx);
    const c = this.config, p = ctx.shapes.basePrefix, params = this.parameters, eps = c.rmsNormEps;
    this.embed = Embedding.from(params, `${p}embed_tokens.weight`, c.padTokenId ?? undefined);
    for (let i = 0; i < c.numLayers; i++) {
      const l = `${p}layers.${i}`;
      const fused = c.fusedProjections;
      this.layers.push({
        inputNorm: RmsNorm.from(params, `${l}.input_layernorm`, eps),
        attnIn: fused ? { qkv: this.linear(`${l}.self_attn.qkv_proj`) } : {
          q: this.linear(`${l}.self_attn.q_proj`),
          k: this.linear(`${l}.self_attn.k_proj`),
          v: this.linear(`${l}.self_attn.v_proj`),
        },
        o: this.linear(`${l}.self_attn.o_proj`),
        postNorm: RmsNorm.from(params, `${l}.post_attention_layernorm`, eps),
        mlpIn: fused ? { gateUp: this.linear(`${l}.mlp.gate_up_proj`) } : {
          gate: this.linear(`${l}.mlp.gate_proj`),
          up: this.linear(`${l}.mlp.up_proj`),
        },
        down: this.linear(`${l}.mlp.down_proj`),
        ...(c.qkNorm
          ? {
            qNorm: RmsNorm.from(params, `${l}.self_attn.q_norm`, eps),
            kNorm: RmsNorm.from(params, `${l}.self_attn.k_norm`, eps),
          }
          : {}),
      });
    }
    this.norm = RmsNorm.from(params, `${p}norm`, eps);
    const head = HEADS[ctx.task];
    this.head = head ? this.linear(head) : null;
  }

  forward(batch: Batch, options: ForwardOptions = {}): ModelOutput {
    const c = this.config;
    const { ids, host, b, t } = tokenInputs(batch, c.modelType);
    const cache = options.cache;
    const end = (cache?.length ?? 0) + t;
    // before any tensor is made: the frequencies refuse positions their scaling does not run to
    const invFreq = c.rope.type === "default" ? undefined : ropeInverseFrequencies(c.rope, c.rotaryDim, end);
    // a classifier reads each row's last token alone: the last layer need not compute the others
    const last = c.numLayers - 1;
    const pooled = pooledPositions(this.gpu, this.task, c, options, batch, host, b, t, this.windowOf(last));
    this.nextStep();
    // with a cache, the padding of the keys (cached ones included) is the cache's to mask
    const mask = cache ? null : paddingMask(this.gpu, batch.attentionMask, b, t);
    if (cache && c.rope.type === "longrope") {
      // LongRoPE rotates with its short factors up to original_max_position_embeddings and its long
      // ones past it: cached keys rotated with the other set must be computed again
      const set = end > c.rope.originalMaxPositions ? "long" : "short";
      if (cache.length > 0 && cache.rotation !== null && cache.rotation !== set) {
        throw new CacheRotationError(
          `${c.modelType}: this pass rotates with LongRoPE's ${set} factors (its positions end at ${end}, ` +
            `original_max_position_embeddings ${c.rope.originalMaxPositions}), the ${cache.length} cached keys ` +
            `with the ${cache.rotation} ones; fill the cache again`,
        );
      }
      cache.rotation = set;
    }
    if (cache) beginCached(cache, c.modelType, this.task, batch.attentionMask, b, t);
    // tables for a power-of-two number of positions, so few lengths are cached per device
    const length = Math.min(Math.max(64, 2 ** Math.ceil(Math.log2(end))), Math.max(end, c.maxPositions));
    const rope = ropeTables(this.gpu, {
      rotaryDim: c.rotaryDim,
      theta: c.rope.theta,
      length,
      invFreq,
      scale: ropeScale(c.rope),
    });
    // generation: the rotations of each row's new positions (b·t rows)
    const newRows = cache ? ropeAt(rope, cache.positions) : rope;
    const attnOpts = {
      numHeads: c.numHeads,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      causal: true,
      mask,
      rope,
    };
    const attnDrop = rawNumber(c, "attention_dropout", 0), residDrop = rawNumber(c, "resid_pdrop", 0);
    const blocks = c.numLayers; // dropout sites: i (probabilities), then blocks + 2i and + 2i + 1
    let x = this.embed.forward(ids);
    this.layers.forEach((layer, i) => {
      const input = x;
      // the key mask through runLayer, which saves it for a checkpoint's rerun (the caller may free it)
      const atLast = pooled && i === last;
      const window = this.windowOf(i);
      x = this.runLayer(input, mask, layerParts(layer), (prev, mask, [keyMask]) => {
        const at = atLast ? { ...pooled, keyMask } : null;
        const a = layer.inputNorm.forward(prev);
        const probsDropout = this.dropoutSpec(attnDrop, i, at?.rows);
        let att: Tensor;
        if (at) att = this.pooledAttention(layer, a, at, rope, probsDropout);
        else if (cache) att = this.cachedAttention(cache, i, layer, a, newRows, window);
        else {
          const { q, k, v } = projectQkv(layer, a, c);
          att = multiHeadAttention(
            headNorm(layer.qNorm, q, c.headDim),
            headNorm(layer.kNorm, k, c.headDim),
            v,
            {
              ...attnOpts,
              mask,
              probsDropout,
              window,
            },
          );
        }
        const residual = at ? atPooled(prev, at) : prev;
        const y = this.dropoutAdd(
          layer.o.forward(att, at?.rows),
          residual,
          residDrop,
          blocks + 2 * i,
          at?.rows,
        );
        const m = layer.postNorm.forward(y);
        const out = layer.down.forward(gatedInput(layer, m, c, at?.rows), at?.rows);
        return this.dropoutAdd(out, y, residDrop, blocks + 2 * i + 1, at?.rows);
      }, atLast ? [pooled.keyMask] : []);
      input.dispose(); // the layer's input is no longer needed (saved activations hold their own views)
    });
    cache?.commit();
    const hidden = this.norm.forward(x);
    if (this.task === "token-cls") {
      return this.tokenClassify(this.head!, hidden, batch, decoderClassifierDropout(c), 3 * c.numLayers + 1);
    }
    return decoderHead(this.task, c, this.head, hidden, batch, host, pooled, options);
  }

  /** The keys a query of layer `i` sees at most (Mistral's and Qwen2's sliding windows), if limited. */
  private windowOf(i: number): number | undefined {
    const c = this.config;
    return c.slidingWindow !== null && c.slidingLayers.includes(i) ? c.slidingWindow : undefined;
  }

  /** A key/value cache for generation ({@link ForwardOptions.cache}), stored as `dtype` (default f32). */
  newCache(dtype?: KvCacheDtype): KvCache {
    // rotary positions extend past max_position_embeddings, as transformers' do (but dynamic NTK's)
    const c = this.config;
    return KvCache.for(this.gpu, {
      ...c,
      maxPositions: maxTokens(c),
      ...(c.rope.type === "longrope" ? { rotationSwitch: c.rope.originalMaxPositions } : {}),
    }, dtype);
  }

  /**
   * The new positions' queries over layer `i`'s cached keys and values and their own, each
   * rotated by `rows` (the tables of the b·t new tokens' positions): a [B, T, H] → [B, T, heads·D].
   */
  private cachedAttention(
    cache: KvCache,
    i: number,
    layer: Layer,
    a: Tensor,
    rows: RopeTables,
    window?: number,
  ): Tensor {
    const c = this.config, [b, t] = a.shape, d = c.headDim;
    // rows holds b·t positions: rotate the b·t tokens as one sequence
    const rotate = (x: Tensor, heads: number) =>
      reshape(rope(reshape(x, [1, b * t, heads, d]), rows, "bthd"), [b, t, heads, d]);
    const { q, k, v } = projectQkv(layer, a, c);
    const q4 = rotate(headNorm(layer.qNorm, q, d), c.numHeads);
    const k4 = rotate(headNorm(layer.kNorm, k, d), c.numKvHeads);
    const keys = { x: reshape(k4, [b, t, c.numKvHeads * d]) }, values = { x: v };
    return reshape(cache.attend(i, q4, keys, values, { causal: true, window }), [b, t, c.numHeads * d]);
  }

  /**
   * Attention at the pooled positions alone: their queries, rotated to their own positions, over
   * every key and value of `a` [B, T, H] → [B, 1, heads·D].
   */
  private pooledAttention(
    layer: Layer,
    a: Tensor,
    at: PooledPositions,
    tables: RopeTables,
    probsDropout: DropoutSpec | null,
  ): Tensor {
    const c = this.config, [b, t] = a.shape, d = c.headDim;
    const attnIn = layer.attnIn;
    // separate projections: the query at the pooled rows alone; fused ones make every row's
    const projected = "q" in attnIn
      ? { q: attnIn.q.forward(atPooled(a, at), at.rows), k: attnIn.k.forward(a), v: attnIn.v.forward(a) }
      : projectQkv(layer, a, c);
    const pooledQ = "q" in attnIn ? projected.q : atPooled(projected.q, at);
    const q = headNorm(layer.qNorm, pooledQ, d);
    // one query per row, each at its own position: rotated as a sequence of B positions
    const rows = ropeAt(tables, at.at);
    const q4 = reshape(rope(reshape(q, [1, b, c.numHeads, d]), rows, "bthd"), [b, 1, c.numHeads, d]);
    const k4 = rope(reshape(headNorm(layer.kNorm, projected.k, d), [b, t, c.numKvHeads, d]), tables, "bthd");
    const v4 = reshape(projected.v, [b, t, c.numKvHeads, d]);
    const out = attention(q4, k4, v4, { layout: "bthd", mask: at.keyMask, probsDropout });
    return reshape(out, [b, 1, c.numHeads * d]);
  }
}

/** x [B, T, heads·d] with each head through `norm` (an RMSNorm over d), or x itself without one. */
function headNorm(norm: RmsNorm | undefined, x: Tensor, d: number): Tensor {
  if (!norm) return x;
  const [b, t, width] = x.shape;
  return reshape(norm.forward(reshape(x, [b, t, width / d, d])), [b, t, width]);
}

/** The rows of `tables` at `positions`: rotations for positions that do not start at 0. */
function ropeAt(tables: RopeTables, positions: Int32Array): RopeTables {
  const at = Tensor.from(tables.cos.gpu, positions, [positions.length]);
  return { cos: embedding(tables.cos, at), sin: embedding(tables.sin, at), rotaryDim: tables.rotaryDim };
}

/** The family of a model type built as LLaMA (llama, mistral, qwen2, qwen3, phi3) for loadModel's registry. */
export function llamaFamily(modelType: LlamaModelType): Family {
  const [causalLm, seqCls, tokenCls, base] = SUPPORTED_ARCHITECTURES[modelType];
  return {
    architectures: { "causal-lm": causalLm, "seq-cls": seqCls, "token-cls": tokenCls, base },
    build: (ctx) => new LlamaModel(ctx),
  };
}
