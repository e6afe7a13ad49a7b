/**
 * BERT and RoBERTa (BertModel / BertForSequenceClassification / BertForTokenClassification,
 * and RoBERTa's three): word + position + token-type embeddings, LayerNorm and
 * dropout; post-LayerNorm encoder layers of bidirectional self-attention (key padding mask
 * from attention_mask) and a feed-forward block with the config's activation. BERT's
 * classifier reads the pooler (dense + tanh on [CLS]); RoBERTa's head is dense → tanh →
 * out_proj on <s>, without a pooler; the token classifiers read every position through dropout and
 * `classifier`, without a pooler. RoBERTa numbers positions from padding_idx + 1 and gives
 * pad tokens position padding_idx ({@link robertaPositionIds}). Dropout (train mode) follows
 * hidden_dropout_prob, attention_probs_dropout_prob and classifier_dropout.
 * @module
 */
import type { BertConfig } from "../io/hf_config.ts";
import { feedForward } from "../nn/feed_forward.ts";
import { FUSIONS } from "../nn/fusions.ts";
import { paddingMask } from "../nn/attention.ts";
import { Embedding } from "../nn/embedding.ts";
import type { Linear } from "../nn/linear.ts";
import { classificationLoss } from "../nn/loss.ts";
import { LayerNorm } from "../nn/norm.ts";
import { add, tanh, Tensor, tidy } from "../tensor/mod.ts";
import { BaseModel, rawNumber, tokenInputs } from "./base.ts";
import { encoderSelfAttention, firstPosition, firstToken } from "./encoder.ts";
import type { Batch, ForwardOptions, ModelOutput } from "./model.ts";
import type { BuildContext, Family } from "./registry.ts";

/** One encoder layer's layers. */
interface Layer {
  query: Linear;
  key: Linear;
  value: Linear;
  attnOut: Linear;
  attnNorm: LayerNorm;
  inter: Linear;
  out: Linear;
  outNorm: LayerNorm;
}

/** What {@link BertModel.forward} returns: for the bare model also the pooler's output. */
export interface BertOutput extends ModelOutput {
  /** BertModel's / RobertaModel's `pooler_output` [batch, hidden] (task "base" only). */
  pooled?: Tensor;
}

/**
 * RoBERTa's position ids for `ids` [b, t] (row-major), as transformers'
 * create_position_ids_from_input_ids: a token that is not `padId` gets padId + (the number of
 * non-pad tokens up to and including it); a pad token gets padId. Throws when a row needs a
 * position beyond the table's `maxPositions` rows.
 */
export function robertaPositionIds(
  ids: Int32Array,
  b: number,
  t: number,
  padId: number,
  maxPositions: number,
): Int32Array {
  if (ids.length !== b * t) {
    throw new Error(`roberta: input ids have ${ids.length} values, expected ${b}×${t}`);
  }
  const out = new Int32Array(b * t);
  for (let i = 0; i < b; i++) {
    let count = 0;
    for (let j = 0; j < t; j++) {
      const real = ids[i * t + j] !== padId;
      if (real) count++;
      out[i * t + j] = real ? padId + count : padId;
    }
    if (padId + count >= maxPositions) {
      throw new Error(
        `roberta: row ${i} has ${count} non-pad tokens, needing position id ${
          padId + count
        }; the model has ` +
          `${maxPositions} positions (at most ${maxPositions - padId - 1} tokens per row)`,
      );
    }
  }
  return out;
}

/** A loaded BERT or RoBERTa encoder, bare or with its sequence-classification head. */
export class BertModel extends BaseModel {
  declare readonly config: BertConfig;
  readonly words: Embedding;
  readonly positions: Embedding;
  readonly tokenTypes: Embedding;
  readonly embNorm: LayerNorm;
  readonly layers: Layer[] = [];
  /** `pooler.dense` (bare models and BERT's classifier); null for RoBERTa's classifier. */
  readonly pooler: Linear | null;
  /**
   * The head's linear layers in order: [classifier] (BERT, and both token classifiers) or
   * [dense, out_proj] (RoBERTa's sequence classifier).
   */
  readonly head: Linear[];

  constructor(ctx: BuildContext) {
    super(ctx.config.modelType, ctx.config, ctx);
    const c = this.config, p = ctx.shapes.basePrefix, params = this.parameters, eps = c.layerNormEps;
    const roberta = c.modelType === "roberta";
    const pad = c.padTokenId ?? undefined;
    this.words = Embedding.from(params, `${p}embeddings.word_embeddings.weight`, pad);
    this.positions = Embedding.from(
      params,
      `${p}embeddings.position_embeddings.weight`,
      roberta ? pad : undefined,
    );
    this.tokenTypes = Embedding.from(params, `${p}embeddings.token_type_embeddings.weight`);
    this.embNorm = LayerNorm.from(params, `${p}embeddings.LayerNorm`, eps);
    for (let i = 0; i < c.numLayers; i++) {
      const l = `${p}encoder.layer.${i}`;
      this.layers.push({
        query: this.linear(`${l}.attention.self.query`),
        key: this.linear(`${l}.attention.self.key`),
        value: this.linear(`${l}.attention.self.value`),
        attnOut: this.linear(`${l}.attention.output.dense`),
        attnNorm: LayerNorm.from(params, `${l}.attention.output.LayerNorm`, eps),
        inter: this.linear(`${l}.intermediate.dense`),
        out: this.linear(`${l}.output.dense`),
        outNorm: LayerNorm.from(params, `${l}.output.LayerNorm`, eps),
      });
    }
    this.pooler = this.linears.has(`${p}pooler.dense`) ? this.linear(`${p}pooler.dense`) : null;
    if (ctx.task === "seq-cls") {
      this.head = roberta
        ? [this.linear("classifier.dense"), this.linear("classifier.out_proj")]
        : [this.linear("classifier")];
    } else if (ctx.task === "token-cls") this.head = [this.linear("classifier")];
    else if (ctx.task === "base") this.head = [];
    else throw new Error(`${c.modelType}: task "${ctx.task}" is not supported (seq-cls, token-cls or base)`);
  }

  forward(batch: Batch, options: ForwardOptions = {}): BertOutput {
    const c = this.config;
    if (options.cache) throw new Error(`${c.modelType}: a key/value cache is for causal language models`);
    const roberta = c.modelType === "roberta";
    const { ids, host, b, t } = tokenInputs(batch, c.modelType, roberta ? undefined : c.maxPositions);
    this.nextStep();
    const drop = rawNumber(c, "hidden_dropout_prob", 0.1);
    const attnDrop = rawNumber(c, "attention_probs_dropout_prob", 0.1);
    const mask = paddingMask(this.gpu, batch.attentionMask, b, t);
    let x = tidy(() => {
      const words = add(this.words.forward(ids), this.tokenTypes.forward(this.tokenTypeIds(batch, b, t)));
      const e = add(words, this.positions.forward(this.positionIds(host, b, t)));
      return this.dropout(this.embNorm.forward(e), drop, 0);
    });
    // the classifiers read [CLS] / <s> alone: the last layer need not compute the other positions
    const lastAtFirst = !!options.headOnly && this.task === "seq-cls" && FUSIONS.head;
    this.layers.forEach((layer, i) => {
      const input = x, site = 3 * i + 1;
      const first = lastAtFirst && i === this.layers.length - 1;
      x = this.runLayer(input, mask, Object.values(layer), (prev, mask) => {
        const at = first ? firstPosition(prev) : null;
        const a = encoderSelfAttention(layer.query, layer.key, layer.value, prev, {
          numHeads: c.numHeads,
          headDim: c.headDim,
          mask,
          probsDropout: this.dropoutSpec(attnDrop, site, at?.rows),
          at,
        });
        const attended = layer.attnOut.forward(a, at?.rows);
        const y = this.residualNorm(layer.attnNorm, attended, at?.x0 ?? prev, drop, site + 1, at?.rows);
        const m = feedForward(layer.inter, layer.out, c.activation, y, at?.rows);
        return this.residualNorm(layer.outNorm, m, y, drop, site + 2, at?.rows);
      });
      input.dispose(); // saved activations hold their own views
    });
    const hidden = x;
    if (this.task === "base") {
      return { logits: hidden, hidden, ...(this.pooler ? { pooled: this.pool(hidden) } : {}) };
    }
    const p = rawNumber(c, "classifier_dropout", drop), site = 3 * c.numLayers + 1;
    if (this.task === "token-cls") return this.tokenClassify(this.head[0], hidden, batch, p, site);
    const logits = this.classify(hidden, p, site);
    const loss = batch.labels ? classificationLoss(logits, batch.labels, c.problemType) : undefined;
    return { logits, hidden, loss };
  }

  /** The pooler's output: tanh(dense(hidden[:, 0])) → [batch, hidden]. */
  pool(hidden: Tensor): Tensor {
    if (!this.pooler) throw new Error(`${this.config.modelType}: this model has no pooler`);
    return tanh(this.pooler.forward(firstToken(hidden)));
  }

  /** The sequence-classification head on [CLS] / <s> → logits [batch, labels]. */
  private classify(hidden: Tensor, p: number, site: number): Tensor {
    if (this.config.modelType === "roberta") {
      const [dense, outProj] = this.head;
      const x = tanh(dense.forward(this.dropout(firstToken(hidden), p, site)));
      return outProj.forward(this.dropout(x, p, site + 1));
    }
    return this.head[0].forward(this.dropout(this.pool(hidden), p, site));
  }

  /** Position ids: 0..t−1 (BERT, shared by the rows) or RoBERTa's [b, t] ids from the tokens. */
  private positionIds(host: Int32Array | undefined, b: number, t: number): Tensor {
    const c = this.config;
    if (c.modelType === "bert") {
      return Tensor.from(this.gpu, Int32Array.from({ length: t }, (_, i) => i), [t]);
    }
    if (!host) {
      throw new Error("roberta: position ids are computed from the input ids, which must be on the CPU");
    }
    return Tensor.from(this.gpu, robertaPositionIds(host, b, t, c.padTokenId!, c.maxPositions), [b, t]);
  }

  /** The batch's token type ids [b, t] (zeros when absent, as transformers). */
  private tokenTypeIds(batch: Batch, b: number, t: number): Tensor {
    const types = batch.tokenTypeIds ?? new Int32Array(b * t);
    if (types.length !== b * t) {
      throw new Error(
        `${this.config.modelType}: tokenTypeIds has ${types.length} values, expected ${b}×${t}`,
      );
    }
    return Tensor.from(this.gpu, types, [b, t]);
  }
}

/** The bert family for loadModel's registry. */
export const bertFamily: Family = {
  architectures: {
    "seq-cls": "BertForSequenceClassification",
    "token-cls": "BertForTokenClassification",
    base: "BertModel",
  },
  build: (ctx) => new BertModel(ctx),
};

/** The roberta family for loadModel's registry. */
export const robertaFamily: Family = {
  architectures: {
    "seq-cls": "RobertaForSequenceClassification",
    "token-cls": "RobertaForTokenClassification",
    base: "RobertaModel",
  },
  build: (ctx) => new BertModel(ctx),
};
