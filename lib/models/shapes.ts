/**
 * The parameter shapes of a model, from its typed config (lib/io/hf_config.ts), without
 * reading any weights: every linear layer (the layers an adapter can target) with its
 * (out, in) features and storage order, and every other parameter (embeddings, norms, heads),
 * so that the whole model's parameter count is known.
 *
 * Module paths are the checkpoint key prefixes that transformers' `save_pretrained` writes for
 * the model class named by `architectures[0]` (or an explicit architecture): e.g.
 * `transformer.h.0.attn.c_attn` (GPT2LMHeadModel), `roberta.encoder.layer.0.attention.self.query`,
 * `model.layers.0.self_attn.q_proj`, `vit.encoder.layer.0.attention.attention.query`. The bare
 * backbones (`GPT2Model`, `BertModel`, …) have no prefix. These are also the module names PEFT
 * sees, except for ViT, whose modules transformers 5 renames internally while saving the
 * classic keys.
 * @module
 */
import type { BertConfig, Gpt2Config, HfConfig, LlamaConfig, ModelType, VitConfig } from "../io/hf_config.ts";
import type { TensorSource } from "../io/safetensors.ts";
import { numel } from "../tensor/shape.ts";

/** How a linear layer's weight is stored: (out, in) as torch's Linear, or (in, out) as GPT-2's Conv1D. */
export type WeightStorage = "out_in" | "in_out";

/** One linear layer (torch Linear or GPT-2 Conv1D). */
export interface LinearShape {
  /** The module path = the checkpoint key prefix of `<path>.weight`. */
  path: string;
  /** Output features M (the logical size, whatever the storage). */
  outFeatures: number;
  /** Input features N (the logical size, whatever the storage). */
  inFeatures: number;
  /** How the weight is stored: "out_in" (torch Linear) or "in_out" (GPT-2 Conv1D). */
  storage: WeightStorage;
  /** Whether the layer has a `<path>.bias`. */
  bias: boolean;
  /**
   * Set when the weight is another parameter's tensor (a tied output layer): the key of that
   * parameter. Such a weight has no key of its own in the checkpoint.
   */
  tiedTo?: string;
}

/** One parameter tensor. */
export interface ParamShape {
  /** Checkpoint key, e.g. "roberta.embeddings.word_embeddings.weight". */
  key: string;
  /** The tensor's shape as stored in the checkpoint. */
  shape: number[];
  /** Set when this parameter is another one's tensor (not stored, not counted twice). */
  tiedTo?: string;
}

/** Every parameter of a model, and its linear layers. */
export interface ModelShapes {
  /**
   * The config's `model_type` ("gpt2", "bert", "roberta", "distilbert", "llama", "mistral", "qwen2",
   * "qwen3", "phi3" or "vit").
   */
  modelType: ModelType;
  /** The transformers class these shapes describe, e.g. "RobertaForSequenceClassification". */
  architecture: string;
  /** Prefix of the backbone's keys: "transformer.", "bert.", "roberta.", "model.", "vit.", or "". */
  basePrefix: string;
  /** All linear layers in module order (backbone first, then the head). */
  linears: LinearShape[];
  /** All parameters in module order, linear weights and biases included. */
  params: ParamShape[];
  /**
   * Module paths of the task head on top of the backbone (e.g. ["classifier"], ["lm_head"],
   * ["score"]); empty for a bare backbone.
   */
  head: string[];
  /**
   * The language-model output layer (what transformers' get_output_embeddings returns), which
   * PEFT's "all-linear" leaves out; null for other models.
   */
  outputLayer: string | null;
}

/** An architecture that is not supported, or a checkpoint that does not match the shapes. */
export class ShapeError extends Error {
  /** Always "ShapeError". */
  override name = "ShapeError";
}

/** Options of {@link modelShapes}. */
export interface ShapeOptions {
  /**
   * The transformers class to describe (default: the config's `architectures[0]`, else the bare
   * backbone). E.g. "RobertaForSequenceClassification" for GLUE from a RobertaForMaskedLM checkpoint.
   */
  architecture?: string;
  /** Labels of a classification head (default: the config's labels). */
  numLabels?: number;
}

/** The architectures each family supports, the bare backbone last. */
export const SUPPORTED_ARCHITECTURES: Readonly<Record<ModelType, readonly string[]>> = {
  gpt2: ["GPT2LMHeadModel", "GPT2ForSequenceClassification", "GPT2ForTokenClassification", "GPT2Model"],
  bert: ["BertForSequenceClassification", "BertForTokenClassification", "BertForMaskedLM", "BertModel"],
  roberta: [
    "RobertaForSequenceClassification",
    "RobertaForTokenClassification",
    "RobertaForMaskedLM",
    "RobertaModel",
  ],
  distilbert: [
    "DistilBertForSequenceClassification",
    "DistilBertForTokenClassification",
    "DistilBertForMaskedLM",
    "DistilBertModel",
  ],
  llama: ["LlamaForCausalLM", "LlamaForSequenceClassification", "LlamaForTokenClassification", "LlamaModel"],
  mistral: [
    "MistralForCausalLM",
    "MistralForSequenceClassification",
    "MistralForTokenClassification",
    "MistralModel",
  ],
  qwen2: ["Qwen2ForCausalLM", "Qwen2ForSequenceClassification", "Qwen2ForTokenClassification", "Qwen2Model"],
  qwen3: ["Qwen3ForCausalLM", "Qwen3ForSequenceClassification", "Qwen3ForTokenClassification", "Qwen3Model"],
  phi3: ["Phi3ForCausalLM", "Phi3ForSequenceClassification", "Phi3ForTokenClassification", "Phi3Model"],
  vit: ["ViTForImageClassification", "ViTModel"],
};

/** The shapes of every parameter of `config`'s model (see {@link ShapeOptions}). */
export function modelShapes(config: HfConfig, opts: ShapeOptions = {}): ModelShapes {
  const supported = SUPPORTED_ARCHITECTURES[config.modelType];
  const architecture = opts.architecture ?? config.architectures[0] ?? supported[supported.length - 1];
  if (!supported.includes(architecture)) {
    throw new ShapeError(
      `${config.path}: architecture "${architecture}" is not supported for model_type "${config.modelType}" ` +
        `(supported: ${supported.join(", ")})`,
    );
  }
  const numLabels = opts.numLabels ?? config.labels.length;
  if (!Number.isInteger(numLabels) || numLabels < 1) {
    throw new ShapeError(`numLabels must be an integer ≥ 1, got ${numLabels}`);
  }
  const b = new Builder(config.modelType, architecture);
  switch (config.modelType) {
    case "gpt2":
      gpt2(b, config, numLabels);
      break;
    case "bert":
    case "roberta":
      bert(b, config, numLabels);
      break;
    case "distilbert":
      distilbert(b, config, numLabels);
      break;
    case "llama":
    case "mistral":
    case "qwen2":
    case "qwen3":
    case "phi3":
      llama(b, config, numLabels);
      break;
    case "vit":
      vit(b, config, numLabels);
      break;
  }
  return b.done();
}

/** Parameters of the model, each tensor once (tied parameters are not counted again). */
export function totalParams(shapes: ModelShapes): number {
  return shapes.params.reduce((s, p) => s + (p.tiedTo ? 0 : numel(p.shape)), 0);
}

/** The parameters inside module `path` (the module itself and everything below it). */
export function paramsUnder(shapes: ModelShapes, path: string): ParamShape[] {
  return shapes.params.filter((p) => p.key.startsWith(path + "."));
}

/** What {@link checkCheckpoint} found besides the expected tensors. */
export interface CheckpointMatch {
  /**
   * The prefix the checkpoint's backbone keys carry: `shapes.basePrefix`, "" for a bare backbone's
   * checkpoint, or a head model's (e.g. "bert.") when a bare backbone loads it.
   */
  prefix: string;
  /**
   * Head parameters the checkpoint lacks (a new head, trained from scratch): absent, another
   * task's, or of another shape (those are in `mismatched` too).
   */
  missingHead: string[];
  /** Head parameters the checkpoint holds in another shape (another number of labels). */
  mismatched: { key: string; stored: number[]; expected: number[] }[];
  /** Checkpoint tensors that are not parameters of `shapes` (e.g. another head's). */
  unexpected: string[];
}

/**
 * Check that `source` (a checkpoint) holds every stored backbone parameter of `shapes` with
 * the right shape, and every head parameter it has with the right shape. A checkpoint saved
 * from the bare backbone (keys without `basePrefix`, as the original GPT-2 weights) is accepted, and
 * so is a head model's checkpoint (keys under its prefix) for a bare backbone.
 * A checkpoint of another architecture (`sourceArchitecture`, its config's `architectures[0]`)
 * holds another task's head: tensors of the same names (e.g. BertForSequenceClassification's
 * `classifier` for BertForTokenClassification) are not this head's, which starts new; so does a
 * head whose tensors have other shapes (another number of labels, asked for).
 * @throws ShapeError listing the first missing and misshapen tensors.
 */
export function checkCheckpoint(
  shapes: ModelShapes,
  source: TensorSource,
  sourceArchitecture?: string,
): CheckpointMatch {
  const otherHead = sourceArchitecture !== undefined &&
    headKind(sourceArchitecture) !== headKind(shapes.architecture);
  const stored = shapes.params.filter((p) => !p.tiedTo);
  const pre = shapes.basePrefix;
  // the prefix the checkpoint's backbone keys carry: ours; none (a bare backbone's checkpoint); or,
  // for a bare backbone, a head model's (bert., transformer.), as transformers strips it
  let prefix = pre;
  if (!stored.some((p) => source.has(p.key))) {
    if (pre !== "" && stored.some((p) => p.key.startsWith(pre) && source.has(p.key.slice(pre.length)))) {
      prefix = "";
    }
    if (pre === "" && stored.length > 0) {
      const first = stored[0].key, hit = source.names.find((n) => n.endsWith(`.${first}`));
      if (hit) prefix = hit.slice(0, hit.length - first.length);
    }
  }
  const keyOf = (k: string) => prefix === pre || !k.startsWith(pre) ? k : prefix + k.slice(pre.length);
  const problems: string[] = [], missingHead: string[] = [];
  const mismatched: CheckpointMatch["mismatched"] = [];
  const expected = new Set<string>();
  for (const p of stored) {
    const key = keyOf(p.key);
    expected.add(key);
    const inHead = shapes.head.some((h) => p.key.startsWith(h + "."));
    // a pooler that a masked-LM or token-classification checkpoint was saved without starts new, as in transformers
    const pooler = p.key.startsWith(`${pre}pooler.`);
    if (!source.has(key) || (inHead && otherHead)) {
      if (inHead || pooler) missingHead.push(key);
      else problems.push(`missing ${key} [${p.shape}]`);
      continue;
    }
    const got = source.info(key).shape;
    // a head of another label count starts new, as transformers' ignore_mismatched_sizes makes it
    if (got.join() !== p.shape.join()) {
      if (inHead) {
        missingHead.push(key);
        mismatched.push({ key, stored: got, expected: p.shape });
      } else problems.push(`${key} is [${got}], expected [${p.shape}]`);
    }
  }
  if (problems.length > 0) {
    const more = problems.length > 8 ? ` … (${problems.length - 8} more)` : "";
    throw new ShapeError(
      `${source.path} does not match ${shapes.architecture}: ${problems.slice(0, 8).join("; ")}${more}`,
    );
  }
  return { prefix, missingHead, mismatched, unexpected: source.names.filter((n) => !expected.has(n)) };
}

/**
 * The task a model class's name ends with, as transformers names them (GPT-2's LMHeadModel is a
 * causal LM): heads are compared by task, so that an old or another family's spelling of the same
 * class ("LLaMAForCausalLM") keeps its head. A name without one (a bare model) stands for itself.
 */
function headKind(architecture: string): string {
  const m =
    /(ForCausalLM|LMHeadModel|ForSequenceClassification|ForTokenClassification|ForImageClassification|ForMaskedLM|ForQuestionAnswering|ForPreTraining)$/
      .exec(architecture);
  return !m ? architecture : m[1] === "LMHeadModel" ? "ForCausalLM" : m[1];
}

/** Collects parameters and linears in module order. */
class Builder {
  readonly linears: LinearShape[] = [];
  readonly params: ParamShape[] = [];
  readonly head: string[] = [];
  basePrefix = "";
  outputLayer: string | null = null;

  constructor(readonly modelType: ModelType, readonly architecture: string) {}

  param(key: string, shape: number[], tiedTo?: string): void {
    this.params.push(tiedTo ? { key, shape, tiedTo } : { key, shape });
  }

  /** A torch Linear(in, out): weight (out, in). */
  linear(path: string, inF: number, outF: number, bias = true, tiedTo?: string): void {
    this.linears.push({
      path,
      outFeatures: outF,
      inFeatures: inF,
      storage: "out_in",
      bias,
      ...(tiedTo ? { tiedTo } : {}),
    });
    this.param(`${path}.weight`, [outF, inF], tiedTo);
    if (bias) this.param(`${path}.bias`, [outF]);
  }

  /** GPT-2's Conv1D(out, in): weight stored (in, out), always a bias. */
  conv1d(path: string, inF: number, outF: number): void {
    this.linears.push({ path, outFeatures: outF, inFeatures: inF, storage: "in_out", bias: true });
    this.param(`${path}.weight`, [inF, outF]);
    this.param(`${path}.bias`, [outF]);
  }

  layerNorm(path: string, size: number, bias = true): void {
    this.param(`${path}.weight`, [size]);
    if (bias) this.param(`${path}.bias`, [size]);
  }

  done(): ModelShapes {
    return {
      modelType: this.modelType,
      architecture: this.architecture,
      basePrefix: this.basePrefix,
      linears: this.linears,
      params: this.params,
      head: this.head,
      outputLayer: this.outputLayer,
    };
  }
}

function gpt2(b: Builder, c: Gpt2Config, numLabels: number): void {
  const bare = b.architecture === "GPT2Model";
  const p = bare ? "" : "transformer.";
  b.basePrefix = p;
  const h = c.hiddenSize;
  b.param(`${p}wte.weight`, [c.vocabSize, h]);
  b.param(`${p}wpe.weight`, [c.maxPositions, h]);
  for (let i = 0; i < c.numLayers; i++) {
    const l = `${p}h.${i}`;
    b.layerNorm(`${l}.ln_1`, h);
    b.conv1d(`${l}.attn.c_attn`, h, 3 * h);
    b.conv1d(`${l}.attn.c_proj`, h, h);
    b.layerNorm(`${l}.ln_2`, h);
    b.conv1d(`${l}.mlp.c_fc`, h, c.intermediateSize);
    b.conv1d(`${l}.mlp.c_proj`, c.intermediateSize, h);
  }
  b.layerNorm(`${p}ln_f`, h);
  if (b.architecture === "GPT2LMHeadModel") {
    b.linear("lm_head", h, c.vocabSize, false, c.tieWordEmbeddings ? `${p}wte.weight` : undefined);
    b.head.push("lm_head");
    b.outputLayer = "lm_head";
  } else if (b.architecture === "GPT2ForSequenceClassification") {
    b.linear("score", h, numLabels, false);
    b.head.push("score");
  } else if (b.architecture === "GPT2ForTokenClassification") {
    b.linear("classifier", h, numLabels);
    b.head.push("classifier");
  }
}

function bert(b: Builder, c: BertConfig, numLabels: number): void {
  const arch = b.architecture;
  const bare = arch.endsWith("Model");
  const p = bare ? "" : c.modelType === "bert" ? "bert." : "roberta.";
  b.basePrefix = p;
  const h = c.hiddenSize;
  const words = `${p}embeddings.word_embeddings.weight`;
  b.param(words, [c.vocabSize, h]);
  b.param(`${p}embeddings.position_embeddings.weight`, [c.maxPositions, h]);
  b.param(`${p}embeddings.token_type_embeddings.weight`, [c.typeVocabSize, h]);
  b.layerNorm(`${p}embeddings.LayerNorm`, h);
  for (let i = 0; i < c.numLayers; i++) {
    const l = `${p}encoder.layer.${i}`;
    b.linear(`${l}.attention.self.query`, h, h);
    b.linear(`${l}.attention.self.key`, h, h);
    b.linear(`${l}.attention.self.value`, h, h);
    b.linear(`${l}.attention.output.dense`, h, h);
    b.layerNorm(`${l}.attention.output.LayerNorm`, h);
    b.linear(`${l}.intermediate.dense`, h, c.intermediateSize);
    b.linear(`${l}.output.dense`, c.intermediateSize, h);
    b.layerNorm(`${l}.output.LayerNorm`, h);
  }
  // The pooler exists in the bare model and in BERT's sequence classifier; RoBERTa's classifier,
  // the token classifiers and the masked-LM models are built without it.
  if (bare || arch === "BertForSequenceClassification") b.linear(`${p}pooler.dense`, h, h);
  switch (arch) {
    case "BertForSequenceClassification":
      b.linear("classifier", h, numLabels);
      b.head.push("classifier");
      break;
    case "RobertaForSequenceClassification":
      b.linear("classifier.dense", h, h);
      b.linear("classifier.out_proj", h, numLabels);
      b.head.push("classifier");
      break;
    case "BertForTokenClassification":
    case "RobertaForTokenClassification":
      b.linear("classifier", h, numLabels);
      b.head.push("classifier");
      break;
    case "BertForMaskedLM":
      b.linear("cls.predictions.transform.dense", h, h);
      b.layerNorm("cls.predictions.transform.LayerNorm", h);
      b.linear("cls.predictions.decoder", h, c.vocabSize, false, c.tieWordEmbeddings ? words : undefined);
      b.param("cls.predictions.bias", [c.vocabSize]);
      b.head.push("cls");
      b.outputLayer = "cls.predictions.decoder";
      break;
    case "RobertaForMaskedLM":
      b.linear("lm_head.dense", h, h);
      b.layerNorm("lm_head.layer_norm", h);
      b.linear("lm_head.decoder", h, c.vocabSize, false, c.tieWordEmbeddings ? words : undefined);
      b.param("lm_head.bias", [c.vocabSize]);
      b.head.push("lm_head");
      b.outputLayer = "lm_head.decoder";
      break;
  }
}

/** DistilBERT: BERT's layers under its own names, no token types and no pooler. */
function distilbert(b: Builder, c: BertConfig, numLabels: number): void {
  const bare = b.architecture === "DistilBertModel";
  const p = bare ? "" : "distilbert.";
  b.basePrefix = p;
  const h = c.hiddenSize;
  const words = `${p}embeddings.word_embeddings.weight`;
  b.param(words, [c.vocabSize, h]);
  b.param(`${p}embeddings.position_embeddings.weight`, [c.maxPositions, h]);
  b.layerNorm(`${p}embeddings.LayerNorm`, h);
  for (let i = 0; i < c.numLayers; i++) {
    const l = `${p}transformer.layer.${i}`;
    for (const name of ["q_lin", "k_lin", "v_lin", "out_lin"]) b.linear(`${l}.attention.${name}`, h, h);
    b.layerNorm(`${l}.sa_layer_norm`, h);
    b.linear(`${l}.ffn.lin1`, h, c.intermediateSize);
    b.linear(`${l}.ffn.lin2`, c.intermediateSize, h);
    b.layerNorm(`${l}.output_layer_norm`, h);
  }
  switch (b.architecture) {
    case "DistilBertForSequenceClassification":
      b.linear("pre_classifier", h, h);
      b.linear("classifier", h, numLabels);
      b.head.push("pre_classifier", "classifier");
      break;
    case "DistilBertForTokenClassification":
      b.linear("classifier", h, numLabels);
      b.head.push("classifier");
      break;
    case "DistilBertForMaskedLM":
      b.linear("vocab_transform", h, h);
      b.layerNorm("vocab_layer_norm", h);
      b.linear("vocab_projector", h, c.vocabSize, true, c.tieWordEmbeddings ? words : undefined);
      b.head.push("vocab_transform", "vocab_layer_norm", "vocab_projector");
      b.outputLayer = "vocab_projector";
      break;
  }
}

function llama(b: Builder, c: LlamaConfig, numLabels: number): void {
  const [causalLm, seqCls, tokenCls, backbone] = SUPPORTED_ARCHITECTURES[c.modelType];
  const bare = b.architecture === backbone;
  const p = bare ? "" : "model.";
  b.basePrefix = p;
  const h = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  b.param(`${p}embed_tokens.weight`, [c.vocabSize, h]);
  for (let i = 0; i < c.numLayers; i++) {
    const l = `${p}layers.${i}`;
    b.layerNorm(`${l}.input_layernorm`, h, false);
    if (c.fusedProjections) b.linear(`${l}.self_attn.qkv_proj`, h, q + 2 * kv, c.qkvBias);
    else {
      b.linear(`${l}.self_attn.q_proj`, h, q, c.qkvBias);
      b.linear(`${l}.self_attn.k_proj`, h, kv, c.qkvBias);
      b.linear(`${l}.self_attn.v_proj`, h, kv, c.qkvBias);
    }
    b.linear(`${l}.self_attn.o_proj`, q, h, c.outputBias);
    if (c.qkNorm) {
      b.layerNorm(`${l}.self_attn.q_norm`, c.headDim, false);
      b.layerNorm(`${l}.self_attn.k_norm`, c.headDim, false);
    }
    b.layerNorm(`${l}.post_attention_layernorm`, h, false);
    if (c.fusedProjections) b.linear(`${l}.mlp.gate_up_proj`, h, 2 * c.intermediateSize, c.mlpBias);
    else {
      b.linear(`${l}.mlp.gate_proj`, h, c.intermediateSize, c.mlpBias);
      b.linear(`${l}.mlp.up_proj`, h, c.intermediateSize, c.mlpBias);
    }
    b.linear(`${l}.mlp.down_proj`, c.intermediateSize, h, c.mlpBias);
  }
  b.layerNorm(`${p}norm`, h, false);
  if (b.architecture === causalLm) {
    b.linear("lm_head", h, c.vocabSize, false, c.tieWordEmbeddings ? `${p}embed_tokens.weight` : undefined);
    b.head.push("lm_head");
    b.outputLayer = "lm_head";
  } else if (b.architecture === seqCls) {
    b.linear("score", h, numLabels, false);
    b.head.push("score");
  } else if (b.architecture === tokenCls) {
    b.linear("score", h, numLabels);
    b.head.push("score");
  }
}

function vit(b: Builder, c: VitConfig, numLabels: number): void {
  const bare = b.architecture === "ViTModel";
  const p = bare ? "" : "vit.";
  b.basePrefix = p;
  const h = c.hiddenSize;
  b.param(`${p}embeddings.cls_token`, [1, 1, h]);
  b.param(`${p}embeddings.position_embeddings`, [1, c.numPatches + 1, h]);
  // The patch embedding is a Conv2d (not a linear layer an adapter targets).
  b.param(`${p}embeddings.patch_embeddings.projection.weight`, [h, c.numChannels, c.patchSize, c.patchSize]);
  b.param(`${p}embeddings.patch_embeddings.projection.bias`, [h]);
  for (let i = 0; i < c.numLayers; i++) {
    const l = `${p}encoder.layer.${i}`;
    b.linear(`${l}.attention.attention.query`, h, h, c.qkvBias);
    b.linear(`${l}.attention.attention.key`, h, h, c.qkvBias);
    b.linear(`${l}.attention.attention.value`, h, h, c.qkvBias);
    b.linear(`${l}.attention.output.dense`, h, h);
    b.linear(`${l}.intermediate.dense`, h, c.intermediateSize);
    b.linear(`${l}.output.dense`, c.intermediateSize, h);
    b.layerNorm(`${l}.layernorm_before`, h);
    b.layerNorm(`${l}.layernorm_after`, h);
  }
  b.layerNorm(`${p}layernorm`, h);
  if (bare) b.linear(`${p}pooler.dense`, h, h);
  else {
    b.linear("classifier", h, numLabels);
    b.head.push("classifier");
  }
}
