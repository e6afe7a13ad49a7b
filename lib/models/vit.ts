/**
 * ViT (ViTForImageClassification, ViTModel): a patch embedding (conv with stride = kernel),
 * the [CLS] token prepended and position embeddings added, pre-LayerNorm encoder layers, a
 * final LayerNorm, and the classifier on [CLS] of its output.
 *
 * Which hidden state is "last": `ModelOutput.hidden` is the encoder's output *before* the final
 * LayerNorm, i.e. the last entry of transformers' `hidden_states` (output_hidden_states=True),
 * which is what the reference fixtures store as `hidden_last`; ViTModel's `last_hidden_state`
 * (after the LayerNorm) is {@link VitOutput.lastHiddenState}. Parameters keep the classic checkpoint keys
 * (`vit.encoder.layer.N.attention.attention.query`), which transformers 5 still saves. The
 * image size must be the config's (no position-embedding interpolation). Dropout (train mode)
 * follows hidden_dropout_prob and attention_probs_dropout_prob.
 * @module
 */
import type { VitConfig } from "../io/hf_config.ts";
import { activate } from "../nn/activation.ts";
import { feedForward } from "../nn/feed_forward.ts";
import { FUSIONS } from "../nn/fusions.ts";
import type { Linear } from "../nn/linear.ts";
import { classificationLoss } from "../nn/loss.ts";
import { LayerNorm, param } from "../nn/norm.ts";
import { add, broadcastTo, concat, patchEmbed, tanh, type Tensor, tidy } from "../tensor/mod.ts";
import { BaseModel, rawNumber } from "./base.ts";
import { encoderSelfAttention, firstPosition, firstToken } from "./encoder.ts";
import type { Batch, ForwardOptions, ModelOutput } from "./model.ts";
import type { BuildContext, Family } from "./registry.ts";

/** One encoder layer's layers. */
interface Layer {
  normBefore: LayerNorm;
  query: Linear;
  key: Linear;
  value: Linear;
  attnOut: Linear;
  normAfter: LayerNorm;
  inter: Linear;
  out: Linear;
}

/**
 * What {@link VitModel.forward} returns. `hidden` is the encoder output before the final
 * LayerNorm (transformers' `hidden_states[-1]`); `logits` of the bare model are
 * `lastHiddenState`.
 */
export interface VitOutput extends ModelOutput {
  /** ViTModel's `last_hidden_state` [batch, patches + 1, hidden]: `hidden` after the final LayerNorm. */
  lastHiddenState: Tensor;
  /** ViTModel's `pooler_output` [batch, hidden] (task "base" only). */
  pooled?: Tensor;
}

/** A loaded ViT, bare or with its image-classification head. */
export class VitModel extends BaseModel {
  declare readonly config: VitConfig;
  /** [1, 1, hidden]. */
  readonly clsToken: Tensor;
  /** [1, patches + 1, hidden]. */
  readonly positionEmbeddings: Tensor;
  /** Conv weight [hidden, channels, patch, patch] and bias [hidden]. */
  readonly patchWeight: Tensor;
  readonly patchBias: Tensor;
  readonly layers: Layer[] = [];
  readonly norm: LayerNorm;
  /** `pooler.dense` of the bare model; null otherwise. */
  readonly pooler: Linear | null;
  /** `classifier` (image-cls); null for the bare model. */
  readonly classifier: Linear | null;

  constructor(ctx: BuildContext) {
    super("vit", ctx.config, ctx);
    const c = this.config, p = ctx.shapes.basePrefix, params = this.parameters, eps = c.layerNormEps;
    this.clsToken = param(params, `${p}embeddings.cls_token`);
    this.positionEmbeddings = param(params, `${p}embeddings.position_embeddings`);
    this.patchWeight = param(params, `${p}embeddings.patch_embeddings.projection.weight`);
    this.patchBias = param(params, `${p}embeddings.patch_embeddings.projection.bias`);
    for (let i = 0; i < c.numLayers; i++) {
      const l = `${p}encoder.layer.${i}`;
      this.layers.push({
        normBefore: LayerNorm.from(params, `${l}.layernorm_before`, eps),
        query: this.linear(`${l}.attention.attention.query`),
        key: this.linear(`${l}.attention.attention.key`),
        value: this.linear(`${l}.attention.attention.value`),
        attnOut: this.linear(`${l}.attention.output.dense`),
        normAfter: LayerNorm.from(params, `${l}.layernorm_after`, eps),
        inter: this.linear(`${l}.intermediate.dense`),
        out: this.linear(`${l}.output.dense`),
      });
    }
    this.norm = LayerNorm.from(params, `${p}layernorm`, eps);
    this.pooler = this.linears.has(`${p}pooler.dense`) ? this.linear(`${p}pooler.dense`) : null;
    if (this.pooler && c.poolerOutputSize !== c.hiddenSize) {
      throw new Error(
        `${c.path}: pooler_output_size (${c.poolerOutputSize}) differs from hidden_size (${c.hiddenSize}); ` +
          `hartley's ViT pooler keeps the hidden width (the image classifier, without a pooler, loads)`,
      );
    }
    if (ctx.task === "image-cls") this.classifier = this.linear("classifier");
    else if (ctx.task === "base") this.classifier = null;
    else throw new Error(`vit: task "${ctx.task}" is not supported (image-cls or base)`);
  }

  forward(batch: Batch, options: ForwardOptions = {}): VitOutput {
    const c = this.config;
    if (options.cache) throw new Error("vit: a key/value cache is for causal language models");
    const pixels = this.pixels(batch);
    this.nextStep();
    const drop = rawNumber(c, "hidden_dropout_prob", 0);
    const attnDrop = rawNumber(c, "attention_probs_dropout_prob", 0);
    const b = pixels.shape[0], h = c.hiddenSize;
    let x = tidy(() => {
      const patches = patchEmbed(pixels, this.patchWeight, this.patchBias, c.patchSize);
      const tokens = concat([broadcastTo(this.clsToken, [b, 1, h]), patches], 1);
      return this.dropout(add(tokens, this.positionEmbeddings), drop, 0);
    });
    // the classifier reads [CLS] alone: the last layer need not compute the other positions
    const lastAtFirst = !!options.headOnly && this.classifier !== null && FUSIONS.head;
    this.layers.forEach((layer, i) => {
      const input = x, site = 3 * i + 1;
      const first = lastAtFirst && i === this.layers.length - 1;
      x = this.runLayer(input, null, Object.values(layer), (prev) => {
        const n = layer.normBefore.forward(prev);
        const at = first ? firstPosition(n) : null;
        const a = encoderSelfAttention(layer.query, layer.key, layer.value, n, {
          numHeads: c.numHeads,
          headDim: c.headDim,
          mask: null,
          probsDropout: this.dropoutSpec(attnDrop, site, at?.rows),
          at,
        });
        const residual = first ? firstPosition(prev).x0 : prev;
        const y = this.dropoutAdd(layer.attnOut.forward(a, at?.rows), residual, drop, site + 1, at?.rows);
        const m = feedForward(layer.inter, layer.out, c.activation, layer.normAfter.forward(y), at?.rows);
        return this.dropoutAdd(m, y, drop, site + 2, at?.rows);
      });
      input.dispose(); // saved activations hold their own views
    });
    const hidden = x, last = this.norm.forward(x);
    if (!this.classifier) {
      return {
        logits: last,
        hidden,
        lastHiddenState: last,
        ...(this.pooler ? { pooled: this.pool(last) } : {}),
      };
    }
    const logits = this.classifier.forward(firstToken(last));
    const loss = batch.labels ? classificationLoss(logits, batch.labels, c.problemType) : undefined;
    return { logits, hidden, lastHiddenState: last, loss };
  }

  /** ViTPooler: pooler_act(dense(last[:, 0])) → [batch, hidden]. */
  private pool(last: Tensor): Tensor {
    const x = this.pooler!.forward(firstToken(last)), act = this.config.poolerAct;
    return act === "tanh" ? tanh(x) : activate(x, act);
  }

  /** The batch's pixel values, checked to be f32 [batch, channels, imageSize, imageSize]. */
  private pixels(batch: Batch): Tensor {
    const c = this.config;
    const want = `f32 [batch, ${c.numChannels}, ${c.imageSize}, ${c.imageSize}]`;
    const px = batch.pixelValues;
    if (!px) throw new Error(`vit: the batch has no pixelValues (expected ${want})`);
    const [b, ch, hh, ww] = px.shape;
    if (
      px.dtype !== "f32" || px.shape.length !== 4 || b < 1 || ch !== c.numChannels || hh !== c.imageSize ||
      ww !== c.imageSize
    ) {
      throw new Error(`vit: pixelValues must be ${want}, got ${px.describe()}`);
    }
    return px;
  }
}

/** The vit family for loadModel's registry. */
export const vitFamily: Family = {
  architectures: { "image-cls": "ViTForImageClassification", base: "ViTModel" },
  build: (ctx) => new VitModel(ctx),
};
