/**
 * A Hugging Face `config.json` → a typed model configuration for the families this project
 * runs: `gpt2`, `bert`, `roberta`, `distilbert`, `llama` (and its variants `mistral`, `qwen2`,
 * `qwen3` and `phi3`), `vit`. Fields that transformers fills with a
 * default when absent get the same default here (e.g. GPT-2's inner size 4·n_embd, Llama's
 * kv heads = heads and head_dim = hidden/heads); the sizes that shape the weights are required.
 * Every error names the file and the field. The rotary embedding's fields are read in
 * rope_config.ts; generation_config.json in generation_config.ts.
 * @module
 */
import { join } from "node:path";
import { ACTIVATIONS, Fields, HfConfigError } from "./config_fields.ts";
import { rope, type RopeConfig, rotaryDim } from "./rope_config.ts";

/** The model families this project supports (config.json `model_type`). */
export const SUPPORTED_MODEL_TYPES = [
  "gpt2",
  "bert",
  "roberta",
  "distilbert",
  "llama",
  "mistral",
  "qwen2",
  "qwen3",
  "phi3",
  "vit",
] as const;

/** A supported `model_type`. */
export type ModelType = typeof SUPPORTED_MODEL_TYPES[number];

/**
 * Feed-forward activation: "gelu" (exact, erf), "gelu_tanh" (the tanh approximation, which
 * transformers calls gelu_new, gelu_pytorch_tanh or gelu_fast), "relu", "silu" (= swish).
 */
export type Activation = "gelu" | "gelu_tanh" | "relu" | "silu";

/** How a classification head's loss is computed (transformers' `problem_type`). */
export type ProblemType = "regression" | "single_label_classification" | "multi_label_classification";

/** Every {@link ProblemType}. */
export const PROBLEM_TYPES: readonly ProblemType[] = [
  "regression",
  "single_label_classification",
  "multi_label_classification",
];

/** Fields every family has. */
export interface CommonConfig {
  /** The config.json this came from. */
  path: string;
  /** The family (config.json `model_type`). */
  modelType: ModelType;
  /** e.g. ["GPT2LMHeadModel"], ["RobertaForSequenceClassification"] (empty when absent). */
  architectures: string[];
  /** Width of the residual stream (embedding size). */
  hiddenSize: number;
  /** Number of transformer blocks. */
  numLayers: number;
  /** Attention heads per layer. */
  numHeads: number;
  /** Size of one attention head. */
  headDim: number;
  /** Feed-forward inner size. */
  intermediateSize: number;
  /** Feed-forward activation. */
  activation: Activation;
  /** Classification labels by id (id2label; "LABEL_i" when absent, 2 by default as transformers). */
  labels: string[];
  /** How a classification head's loss is computed (null when the config does not say). */
  problemType: ProblemType | null;
  /** Whether the output projection shares the input embedding matrix. */
  tieWordEmbeddings: boolean;
  /** Weight dtype recorded at save time ("float32", "float16", "bfloat16"), if any. */
  dtype: string | null;
  /** Padding token id, if any. */
  padTokenId: number | null;
  /** Beginning-of-sequence token id, if any. */
  bosTokenId: number | null;
  /** End-of-sequence ids (a config may list several). */
  eosTokenIds: number[];
  /**
   * generation_config.json's end-of-sequence ids (chat models end a turn with ids config.json may
   * not list: Llama 3's <|eot_id|>), read once by loadModel for a causal LM; absent otherwise.
   */
  generationEosTokenIds?: number[];
  /** The parsed JSON, for fields not mapped here. */
  raw: Readonly<Record<string, unknown>>;
}

/** GPT-2: learned absolute positions, pre-LayerNorm, Conv1D weights stored (in, out). */
export interface Gpt2Config extends CommonConfig {
  /** Always "gpt2". */
  modelType: "gpt2";
  /** Rows of the token-embedding table. */
  vocabSize: number;
  /** Rows of the position-embedding table (n_positions). */
  maxPositions: number;
  /** LayerNorm epsilon. */
  layerNormEps: number;
  /** Scale attention scores by 1/√headDim (transformers' scale_attn_weights). */
  scaleAttnWeights: boolean;
  /** Additionally scale layer i's scores by 1/(i+1). */
  scaleAttnByInverseLayerIdx: boolean;
}

/**
 * BERT, RoBERTa and DistilBERT: post-LayerNorm encoders (DistilBERT's without token-type
 * embeddings; its config names its sizes dim, n_layers, n_heads, hidden_dim).
 */
export interface BertConfig extends CommonConfig {
  /** "bert", "roberta" or "distilbert". */
  modelType: "bert" | "roberta" | "distilbert";
  /** Rows of the token-embedding table. */
  vocabSize: number;
  /** Rows of the position-embedding table. */
  maxPositions: number;
  /** Rows of the token-type (segment) embedding table (0: none, as DistilBERT). */
  typeVocabSize: number;
  /** LayerNorm epsilon. */
  layerNormEps: number;
  /**
   * Position id of the first token: 0 for BERT; padTokenId + 1 for RoBERTa, whose position ids
   * count non-pad tokens from there and give pad tokens position padTokenId.
   */
  positionOffset: number;
}

/** The model types built as LLaMA: the same layers, with the differences in {@link LlamaConfig}. */
export type LlamaModelType = "llama" | "mistral" | "qwen2" | "qwen3" | "phi3";

/**
 * Llama: RMSNorm, RoPE, SwiGLU, grouped-query attention. Mistral, Qwen2, Qwen3 and Phi-3 are the
 * same model but for their biases (Qwen2's on q/k/v alone), their sliding-window attention, Qwen3's
 * RMSNorm of each query and key head, and Phi-3's fused projections (qkv_proj, gate_up_proj).
 */
export interface LlamaConfig extends CommonConfig {
  /** "llama", "mistral", "qwen2", "qwen3" or "phi3". */
  modelType: LlamaModelType;
  /** Rows of the token-embedding table. */
  vocabSize: number;
  /** Longest sequence the model was configured for (max_position_embeddings). */
  maxPositions: number;
  /** Key/value heads (grouped-query attention); divides numHeads. */
  numKvHeads: number;
  /** RMSNorm epsilon. */
  rmsNormEps: number;
  /** Rotary position embedding parameters. */
  rope: RopeConfig;
  /** Whether the q/k/v projections have biases (Llama's attention_bias; always for Qwen2). */
  qkvBias: boolean;
  /** Whether the o projection has a bias (Llama's attention_bias; never for Mistral and Qwen2). */
  outputBias: boolean;
  /**
   * Keys a query sees at most in the sliding-window layers (Mistral's sliding_window; Qwen2's when
   * use_sliding_window and some layer is one), or null when every layer attends to all keys.
   */
  slidingWindow: number | null;
  /** The layers that slide (every layer for Mistral; Qwen2's from layer_types or max_window_layers). */
  slidingLayers: number[];
  /** Whether the gate/up/down projections have biases. */
  mlpBias: boolean;
  /** Each query and key head goes through an RMSNorm over headDim before RoPE (Qwen3's q_norm, k_norm). */
  qkNorm: boolean;
  /**
   * q, k and v come from one projection (qkv_proj, their rows stacked in that order) and gate and
   * up from another (gate_up_proj): Phi-3.
   */
  fusedProjections: boolean;
  /** The leading dimensions of each head that RoPE rotates: headDim · partial_rotary_factor. */
  rotaryDim: number;
}

/** ViT: patch embedding + [CLS] token + pre-LayerNorm encoder. */
export interface VitConfig extends CommonConfig {
  /** Always "vit". */
  modelType: "vit";
  /** Input image height and width, in pixels. */
  imageSize: number;
  /** Patch height and width, in pixels. */
  patchSize: number;
  /** Input image channels (3 for RGB). */
  numChannels: number;
  /** Patches per image: ⌊imageSize / patchSize⌋². */
  numPatches: number;
  /** LayerNorm epsilon. */
  layerNormEps: number;
  /** Whether the query/key/value projections have biases. */
  qkvBias: boolean;
  /** The bare model's pooler activation (pooler_act): tanh by default, or a feed-forward one. */
  poolerAct: Activation | "tanh";
  /** Width of the bare model's pooler output (pooler_output_size; hiddenSize when absent). */
  poolerOutputSize: number;
}

/** A parsed config of any supported family (discriminated by `modelType`). */
export type HfConfig = Gpt2Config | BertConfig | LlamaConfig | VitConfig;

/**
 * The longest token sequence a model takes: max_position_embeddings, less the ids RoBERTa's
 * positions skip (514 → 512 tokens); Infinity for a ViT, whose inputs are patches, and for a
 * rotary decoder, whose positions are computed rather than looked up (transformers takes any
 * length; see {@link pastPretraining}), but for dynamic-NTK RoPE, run only within
 * max_position_embeddings (see lib/nn/rope.ts).
 */
export function maxTokens(config: HfConfig): number {
  if (!("maxPositions" in config)) return Infinity;
  if ("rope" in config) return config.rope.type === "dynamic" ? config.maxPositions : Infinity;
  return config.maxPositions - ("positionOffset" in config ? config.positionOffset : 0);
}

/**
 * A warning when rows of `tokens` pass a rotary decoder's max_position_embeddings: its positions
 * extend there, as transformers' do, but pretraining never reached them; null otherwise.
 */
export function pastPretraining(config: HfConfig, tokens: number): string | null {
  if (!("rope" in config) || tokens <= config.maxPositions) return null;
  return `rows of up to ${tokens} tokens pass the model's ${config.maxPositions} positions ` +
    `(max_position_embeddings): its rotary positions extend to them, as in transformers, ` +
    `but pretraining never reached them`;
}

/** Read and parse `path` (a config.json, or a model folder holding one). */
export async function loadHfConfig(path: string): Promise<HfConfig> {
  const file = (await Deno.stat(path)).isDirectory ? join(path, "config.json") : path;
  const text = await Deno.readTextFile(file);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new HfConfigError(`${file}: invalid JSON (${(e as Error).message})`);
  }
  return parseHfConfig(json, file);
}

/** Parse config.json content; `path` is used in error messages and kept in the result. */
export function parseHfConfig(json: unknown, path: string): HfConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new HfConfigError(`${path}: expected a JSON object`);
  }
  const f = new Fields(json as Record<string, unknown>, path);
  refuseAlteredWeights(f);
  const modelType = f.raw.model_type;
  const supported = SUPPORTED_MODEL_TYPES.join(", ");
  if (modelType === undefined) throw new HfConfigError(`${path}: no "model_type" (supported: ${supported})`);
  switch (modelType) {
    case "gpt2":
      return gpt2(f);
    case "bert":
    case "roberta":
      return bert(f, modelType as "bert" | "roberta");
    case "distilbert":
      return distilbert(f);
    case "llama":
    case "mistral":
    case "qwen2":
    case "qwen3":
    case "phi3":
      return llama(f, modelType as LlamaModelType);
    case "vit":
      return vit(f);
    default:
      throw new HfConfigError(
        `${path}: model_type ${JSON.stringify(modelType)} is not supported (supported: ${supported})`,
      );
  }
}

/**
 * Refuse a config whose checkpoint holds other weights than its family's layers: quantized ones
 * (quantization_config: GPTQ, AWQ, bitsandbytes, FP8…, which transformers dequantizes as it runs)
 * or attention layers with heads removed (pruned_heads).
 */
function refuseAlteredWeights(f: Fields): void {
  const quantized = f.raw.quantization_config;
  if (quantized != null) {
    const method = (quantized as Record<string, unknown>).quant_method;
    throw new HfConfigError(
      `${f.path}: "quantization_config" (quant_method ${JSON.stringify(method ?? null)}): the checkpoint's ` +
        `weights are stored quantized, which hartley does not read; use the unquantized checkpoint ` +
        `(--dtype q8 or q4 quantizes its linear layers at load)`,
    );
  }
  const pruned = f.raw.pruned_heads;
  if (pruned != null && (typeof pruned !== "object" || Object.keys(pruned).length > 0)) {
    throw new HfConfigError(
      `${f.path}: "pruned_heads" ${JSON.stringify(pruned)}: the checkpoint's attention layers have heads ` +
        `removed, which hartley does not build (every layer has num_attention_heads heads)`,
    );
  }
}

function gpt2(f: Fields): Gpt2Config {
  const hiddenSize = f.int("n_embd"), numHeads = f.int("n_head");
  return {
    ...common(f, "gpt2", { tie: true, pad: null, bos: 50256, eos: 50256 }),
    modelType: "gpt2",
    vocabSize: f.int("vocab_size"),
    maxPositions: f.int("n_positions"),
    hiddenSize,
    numLayers: f.int("n_layer"),
    numHeads,
    headDim: f.divide(hiddenSize, numHeads, "n_embd", "n_head"),
    intermediateSize: f.int("n_inner", 4 * hiddenSize),
    activation: f.activation("activation_function", "gelu_new"),
    layerNormEps: f.positive("layer_norm_epsilon", 1e-5),
    scaleAttnWeights: f.bool("scale_attn_weights", true),
    scaleAttnByInverseLayerIdx: f.bool("scale_attn_by_inverse_layer_idx", false),
  };
}

function bert(f: Fields, modelType: "bert" | "roberta"): BertConfig {
  const hiddenSize = f.int("hidden_size"), numHeads = f.int("num_attention_heads");
  const base = common(
    f,
    modelType,
    modelType === "bert"
      ? { tie: true, pad: 0, bos: null, eos: null }
      : { tie: true, pad: 1, bos: 0, eos: 2 },
  );
  const positions = f.str("position_embedding_type", "absolute");
  if (positions !== "absolute") {
    throw new HfConfigError(
      `${f.path}: position_embedding_type "${positions}" is not supported (only "absolute")`,
    );
  }
  // transformers masks a decoder's attention causally (BertLMHeadModel, RobertaForCausalLM)
  if (f.raw.is_decoder === true) {
    throw new HfConfigError(
      `${f.path}: "is_decoder": true (a causal ${
        modelType === "bert" ? "BERT" : "RoBERTa"
      }, whose attention ` +
        `transformers masks causally) is not supported: hartley's ${modelType} attends both ways`,
    );
  }
  if (modelType === "roberta" && base.padTokenId === null) {
    throw new HfConfigError(`${f.path}: RoBERTa needs "pad_token_id" (its position ids start after it)`);
  }
  return {
    ...base,
    modelType,
    vocabSize: f.int("vocab_size"),
    maxPositions: f.int("max_position_embeddings"),
    hiddenSize,
    numLayers: f.int("num_hidden_layers"),
    numHeads,
    headDim: f.divide(hiddenSize, numHeads, "hidden_size", "num_attention_heads"),
    intermediateSize: f.int("intermediate_size"),
    activation: f.activation("hidden_act", "gelu"),
    typeVocabSize: f.int("type_vocab_size", 2, 0),
    layerNormEps: f.positive("layer_norm_eps", 1e-12),
    positionOffset: modelType === "roberta" ? base.padTokenId! + 1 : 0,
  };
}

/** DistilBERT: BERT's layers under other names, without token types (LayerNorm eps fixed at 1e-12). */
function distilbert(f: Fields): BertConfig {
  const hiddenSize = f.int("dim", 768), numHeads = f.int("n_heads", 12);
  return {
    ...common(f, "distilbert", { tie: true, pad: 0, bos: null, eos: null }),
    modelType: "distilbert",
    vocabSize: f.int("vocab_size"),
    maxPositions: f.int("max_position_embeddings", 512),
    hiddenSize,
    numLayers: f.int("n_layers", 6),
    numHeads,
    headDim: f.divide(hiddenSize, numHeads, "dim", "n_heads"),
    intermediateSize: f.int("hidden_dim", 3072),
    activation: f.activation("activation", "gelu"),
    typeVocabSize: 0,
    layerNormEps: 1e-12,
    positionOffset: 0,
  };
}

/**
 * transformers' defaults where the variants differ (their config classes): key/value heads and
 * head size when the config leaves them out (else as many as the query heads, and hidden/heads).
 */
const LLAMA_DEFAULTS: Record<
  LlamaModelType,
  Defaults & { positions: number; kvHeads?: number; headDim?: number }
> = {
  llama: { tie: false, pad: null, bos: 1, eos: 2, positions: 2048 },
  mistral: { tie: false, pad: null, bos: 1, eos: 2, positions: 4096 * 32, kvHeads: 8 },
  qwen2: { tie: false, pad: null, bos: null, eos: null, positions: 32768, kvHeads: 32 },
  qwen3: { tie: false, pad: null, bos: null, eos: null, positions: 32768, kvHeads: 32, headDim: 128 },
  phi3: { tie: false, pad: 32000, bos: 1, eos: 32000, positions: 4096 },
};

function llama(f: Fields, modelType: LlamaModelType): LlamaConfig {
  const defaults = LLAMA_DEFAULTS[modelType];
  const hiddenSize = f.int("hidden_size"), numHeads = f.int("num_attention_heads");
  // an explicit null means as many as the query heads (the config classes' `if ... is None`)
  const numKvHeads = f.raw.num_key_value_heads === null
    ? numHeads
    : f.int("num_key_value_heads", defaults.kvHeads ?? numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new HfConfigError(
      `${f.path}: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  const headDim = f.has("head_dim") || defaults.headDim !== undefined
    ? f.int("head_dim", defaults.headDim)
    : f.divide(hiddenSize, numHeads, "hidden_size", "num_attention_heads");
  const rotary = rotaryDim(f, headDim);
  const attentionBias = (modelType === "llama" || modelType === "qwen3") && f.bool("attention_bias", false);
  const maxPositions = f.int("max_position_embeddings", defaults.positions);
  return {
    ...common(f, modelType, defaults),
    modelType,
    vocabSize: f.int("vocab_size"),
    maxPositions,
    hiddenSize,
    numLayers: f.int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: f.int("intermediate_size"),
    activation: f.activation("hidden_act", "silu"),
    rmsNormEps: f.positive("rms_norm_eps", modelType === "phi3" ? 1e-5 : 1e-6),
    rope: rope(f, rotary, maxPositions, modelType === "phi3" ? 4096 : undefined),
    qkvBias: modelType === "qwen2" || attentionBias,
    outputBias: attentionBias,
    mlpBias: modelType === "llama" && f.bool("mlp_bias", false),
    qkNorm: modelType === "qwen3",
    fusedProjections: modelType === "phi3",
    rotaryDim: rotary,
    ...slidingWindow(f, modelType),
  };
}

/**
 * The attention window of a Mistral, Qwen2 or Qwen3 config and the layers it applies to, as their
 * config classes derive them: Mistral slides in every layer unless sliding_window is null (4096
 * when absent); Qwen2 and Qwen3 only with use_sliding_window, in the layers its layer_types (or
 * those from max_window_layers on) name.
 */
function slidingWindow(
  f: Fields,
  modelType: LlamaModelType,
): { slidingWindow: number | null; slidingLayers: number[] } {
  const none = { slidingWindow: null, slidingLayers: [] };
  if (modelType === "llama") return none;
  if (modelType === "phi3") {
    // Phi-3 slides in every layer when sliding_window is set (its default is none)
    const window = f.raw.sliding_window == null ? null : f.int("sliding_window");
    return window === null ? none : {
      slidingWindow: window,
      slidingLayers: Array.from({ length: f.int("num_hidden_layers") }, (_, i) => i),
    };
  }
  const has = f.raw.sliding_window !== undefined;
  const window = has && f.raw.sliding_window === null ? null : f.int("sliding_window", 4096);
  const layers = f.int("num_hidden_layers");
  const all = Array.from({ length: layers }, (_, i) => i);
  if (window === null) return none;
  if (modelType === "mistral") return { slidingWindow: window, slidingLayers: all };
  if (!f.bool("use_sliding_window", false)) return none;
  const types = f.raw.layer_types;
  let sliding: number[];
  if (types !== undefined && types !== null) {
    if (!Array.isArray(types) || types.length !== layers) {
      throw new HfConfigError(`${f.path}: "layer_types" must list the ${layers} layers' attention types`);
    }
    sliding = all.filter((i) => types[i] === "sliding_attention");
  } else {
    const first = f.int("max_window_layers", 28, 0);
    sliding = all.filter((i) => i >= first);
  }
  return sliding.length ? { slidingWindow: window, slidingLayers: sliding } : none;
}

function vit(f: Fields): VitConfig {
  const hiddenSize = f.int("hidden_size"), numHeads = f.int("num_attention_heads");
  const imageSize = f.int("image_size"), patchSize = f.int("patch_size");
  if (patchSize > imageSize) {
    throw new HfConfigError(`${f.path}: patch_size (${patchSize}) is larger than image_size (${imageSize})`);
  }
  if (imageSize % patchSize !== 0) {
    throw new HfConfigError(
      `${f.path}: image_size (${imageSize}) is not a multiple of patch_size (${patchSize}); hartley's patch ` +
        `embedding takes whole patches`,
    );
  }
  return {
    ...common(f, "vit", { tie: true, pad: null, bos: null, eos: null }),
    modelType: "vit",
    hiddenSize,
    numLayers: f.int("num_hidden_layers"),
    numHeads,
    headDim: f.divide(hiddenSize, numHeads, "hidden_size", "num_attention_heads"),
    intermediateSize: f.int("intermediate_size"),
    activation: f.activation("hidden_act", "gelu"),
    imageSize,
    patchSize,
    numChannels: f.int("num_channels", 3),
    numPatches: Math.floor(imageSize / patchSize) ** 2,
    layerNormEps: f.positive("layer_norm_eps", 1e-12),
    qkvBias: f.bool("qkv_bias", true),
    poolerAct: poolerAct(f),
    poolerOutputSize: f.int("pooler_output_size", hiddenSize),
  };
}

/** ViTPooler's ACT2FN[pooler_act]: tanh, or one of the feed-forward activations. */
function poolerAct(f: Fields): Activation | "tanh" {
  const name = f.str("pooler_act", "tanh");
  if (name === "tanh") return "tanh";
  if (!ACTIVATIONS[name]) {
    throw new HfConfigError(
      `${f.path}: "pooler_act" ${JSON.stringify(name)} is not supported (supported: tanh, ${
        Object.keys(ACTIVATIONS).join(", ")
      })`,
    );
  }
  return ACTIVATIONS[name];
}

/** Family defaults of the PretrainedConfig-level fields. */
interface Defaults {
  tie: boolean;
  pad: number | null;
  bos: number | null;
  eos: number | null;
}

/** The common fields each family fills itself (sizes and activation). */
type Shape = "hiddenSize" | "numLayers" | "numHeads" | "headDim" | "intermediateSize" | "activation";

/** The common fields read the same way for every family. */
function common(f: Fields, modelType: ModelType, d: Defaults): Omit<CommonConfig, Shape> {
  const eos = f.raw.eos_token_id === undefined ? d.eos : f.raw.eos_token_id;
  let eosTokenIds: number[];
  if (Array.isArray(eos)) eosTokenIds = eos.map((id, i) => f.checkId(`eos_token_id[${i}]`, id));
  else eosTokenIds = eos === null ? [] : [f.checkId("eos_token_id", eos)];
  return {
    path: f.path,
    modelType,
    architectures: f.strings("architectures"),
    labels: labels(f),
    problemType: problemType(f),
    tieWordEmbeddings: f.bool("tie_word_embeddings", d.tie),
    dtype: f.raw.dtype != null
      ? f.str("dtype", "")
      : f.raw.torch_dtype != null
      ? f.str("torch_dtype", "")
      : null,
    padTokenId: f.tokenId("pad_token_id", d.pad),
    bosTokenId: f.tokenId("bos_token_id", d.bos),
    eosTokenIds,
    raw: f.raw,
  };
}

/** Labels from id2label (ids 0..n−1), else num_labels generic names, else transformers' 2. */
function labels(f: Fields): string[] {
  const map = f.raw.id2label;
  if (map != null) {
    if (typeof map !== "object" || Array.isArray(map)) {
      throw new HfConfigError(`${f.path}: "id2label" must be an object {"0": "name", ...}`);
    }
    const entries = Object.entries(map as Record<string, unknown>);
    const out: string[] = new Array(entries.length);
    for (const [k, v] of entries) {
      const id = Number(k);
      if (
        !Number.isInteger(id) || id < 0 || id >= entries.length || out[id] !== undefined ||
        typeof v !== "string"
      ) {
        throw new HfConfigError(
          `${f.path}: "id2label" must map each id 0..${entries.length - 1} once to a name, got "${k}": ${
            JSON.stringify(v)
          }`,
        );
      }
      out[id] = v;
    }
    return out;
  }
  const n = f.int("num_labels", 2);
  return Array.from({ length: n }, (_, i) => `LABEL_${i}`);
}

function problemType(f: Fields): ProblemType | null {
  const p = f.raw.problem_type;
  if (p == null) return null;
  if (!PROBLEM_TYPES.includes(p as ProblemType)) {
    throw new HfConfigError(
      `${f.path}: problem_type ${JSON.stringify(p)} is not one of ${PROBLEM_TYPES.join(", ")}`,
    );
  }
  return p as ProblemType;
}
