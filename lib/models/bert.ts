/**
 * BERT, RoBERTa and DistilBERT (their Model, ForSequenceClassification and
 * ForTokenClassification classes): word + position (+ token-type, but for DistilBERT)
 * embeddings, LayerNorm and dropout; post-LayerNorm encoder layers of bidirectional
 * self-attention (key padding mask from attention_mask) and a feed-forward block with the
 * config's activation. BERT's classifier reads the pooler (dense + tanh on [CLS]); RoBERTa's
 * head is dense → tanh → out_proj on <s>, without a pooler; DistilBERT's is pre_classifier →
 * ReLU → classifier on [CLS]; the token classifiers read every position through dropout and
 * `classifier`. RoBERTa numbers positions from padding_idx + 1 and gives pad tokens position
 * padding_idx ({@link robertaPositionIds}). Dropout (train mode) follows hidden_dropout_prob,
 * attention_probs_dropout_prob and classifier_dropout (DistilBERT: dropout, attention_dropout
 * and seq_classif_dropout, with no dropout after the attention's output projection).
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
import { add, relu, tanh, Tensor, tidy } from "../tensor/mod.ts";
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
  /** Token-type embeddings; null for DistilBERT, which has none. */
  readonly tokenTypes: Embedding | null;
  readonly embNorm: LayerNorm;
  readonly layers: Layer[] = [];
  /** `pooler.dense` (bare models and BERT's classifier); null for RoBERTa's classifier. */
  readonly pooler: Linear | null;
  /**
   * The head's linear layers in order: [classifier] (BERT's sequence classifier and every token
   * classifier), [dense, out_proj] (RoBERTa's) or [pre_classifier, classifier] (DistilBERT's).
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
    this.tokenTypes = c.typeVocabSize > 0
      ? Embedding.from(params, `${p}embeddings.token_type_embeddings.weight`)
      : null;
    this.embNorm = LayerNorm.from(params, `${p}embeddings.LayerNorm`, eps);
    for (let i = 0; i < c.numLayers; i++) {
      const paths = layerPaths(c.modelType, p, i);
      this.layers.push({
        query: this.linear(paths.query),
        key: this.linear(paths.key),
        value: this.linear(paths.value),
        attnOut: this.linear(paths.attnOut),
        attnNorm: LayerNorm.from(params, paths.attnNorm, eps),
        inter: this.linear(paths.inter),
        out: this.linear(paths.out),
        outNorm: LayerNorm.from(params, paths.outNorm, eps),
      });
    }
    this.pooler = this.linears.has(`${p}pooler.dense`) ? this.linear(`${p}pooler.dense`) : null;
    if (ctx.task === "seq-cls") {
      this.head = roberta
        ? [this.linear("classifier.dense"), this.linear("classifier.out_proj")]
        : c.modelType === "distilbert"
        ? [this.linear("pre_classifier"), this.linear("classifier")]
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
    const distil = c.modelType === "distilbert";
    const drop = rawNumber(c, distil ? "dropout" : "hidden_dropout_prob", 0.1);
    const attnDrop = rawNumber(c, distil ? "attention_dropout" : "attention_probs_dropout_prob", 0.1);
    // DistilBERT has no dropout after the attention's output projection
    const attnOutDrop = distil ? 0 : drop;
    const mask = paddingMask(this.gpu, batch.attentionMask, b, t);
    let x = tidy(() => {
      const types = this.tokenTypes;
      // ids uploaded before the first kernel: an upload between kernels ends the compute pass
      const typeIds = types ? this.tokenTypeIds(batch, b, t) : null;
      const positionIds = this.positionIds(host, b, t);
      const words = types ? add(this.words.forward(ids), types.forward(typeIds!)) : this.words.forward(ids);
      const e = add(words, this.positions.forward(positionIds));
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
        const y = this.residualNorm(
          layer.attnNorm,
          attended,
          at?.x0 ?? prev,
          attnOutDrop,
          site + 1,
          at?.rows,
        );
        const m = feedForward(layer.inter, layer.out, c.activation, y, at?.rows);
        return this.residualNorm(layer.outNorm, m, y, drop, site + 2, at?.rows);
      });
      input.dispose(); // saved activations hold their own views
    });
    const hidden = x;
    if (this.task === "base") {
      return { logits: hidden, hidden, ...(this.pooler ? { pooled: this.pool(hidden) } : {}) };
    }
    // DistilBERT's token classifier drops with `dropout`, its sequence classifier with seq_classif_dropout
    const p = distil ? drop : rawNumber(c, "classifier_dropout", drop), site = 3 * c.numLayers + 1;
    if (this.task === "token-cls") return this.tokenClassify(this.head[0], hidden, batch, p, site);
    const logits = this.classify(hidden, distil ? rawNumber(c, "seq_classif_dropout", 0.2) : p, site);
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
    if (this.config.modelType === "distilbert") {
      const [pre, classifier] = this.head;
      return classifier.forward(this.dropout(relu(pre.forward(firstToken(hidden))), p, site));
    }
    return this.head[0].forward(this.dropout(this.pool(hidden), p, site));
  }

  /** Position ids: 0..t−1 (BERT, DistilBERT; shared by the rows) or RoBERTa's [b, t] ids from the tokens. */
  private positionIds(host: Int32Array | undefined, b: number, t: number): Tensor {
    const c = this.config;
    if (c.modelType !== "roberta") {
      return Tensor.from(this.gpu, Int32Array.from({ length: t }, (_, i) => i), [t]);
    }
    if (!host) {
      throw new Error("roberta: position ids are computed from the input ids, which must be on the CPU");
    }
    return Tensor.from(this.gpu, robertaPositionIds(host, b, t, c.padTokenId!, c.maxPositions), [b, t]);
  }

  /**
   * The batch's token type ids [b, t] (zeros when absent, as transformers). RoBERTa's always zeros:
   * its tokenizers return none (model_input_names), though tokenizer.json's pair template numbers
   * the second text 1, past its one-row type table.
   */
  private tokenTypeIds(batch: Batch, b: number, t: number): Tensor {
    const given = this.config.modelType === "roberta" ? undefined : batch.tokenTypeIds;
    const types = given ?? new Int32Array(b * t);
    if (types.length !== b * t) {
      throw new Error(
        `${this.config.modelType}: tokenTypeIds has ${types.length} values, expected ${b}×${t}`,
      );
    }
    return Tensor.from(this.gpu, types, [b, t]);
  }
}

/** The checkpoint paths of encoder layer `i`'s parts (`p`: the backbone's prefix). */
function layerPaths(modelType: string, p: string, i: number): Record<keyof Layer, string> {
  if (modelType === "distilbert") {
    const l = `${p}transformer.layer.${i}`;
    return {
      query: `${l}.attention.q_lin`,
      key: `${l}.attention.k_lin`,
      value: `${l}.attention.v_lin`,
      attnOut: `${l}.attention.out_lin`,
      attnNorm: `${l}.sa_layer_norm`,
      inter: `${l}.ffn.lin1`,
      out: `${l}.ffn.lin2`,
      outNorm: `${l}.output_layer_norm`,
    };
  }
  const l = `${p}encoder.layer.${i}`;
  return {
    query: `${l}.attention.self.query`,
    key: `${l}.attention.self.key`,
    value: `${l}.attention.self.value`,
    attnOut: `${l}.attention.output.dense`,
    attnNorm: `${l}.attention.output.LayerNorm`,
    inter: `${l}.intermediate.dense`,
    out: `${l}.output.dense`,
    outNorm: `${l}.output.LayerNorm`,
  };
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

/** The distilbert family for loadModel's registry. */
export const distilbertFamily: Family = {
  architectures: {
    "seq-cls": "DistilBertForSequenceClassification",
    "token-cls": "DistilBertForTokenClassification",
    base: "DistilBertModel",
  },
  build: (ctx) => new BertModel(ctx),
};
