/**
 * Exact trainable-parameter counts of SSH, LoRA, FourierFT and full fine-tuning, from a
 * model's shapes (lib/models/shapes.ts), and the comparison table of the paper's settings on
 * RoBERTa-base/large, GPT-2 medium and LLaMA-3.1-8B, whose configs are built here from their
 * published sizes (no download).
 * @module
 */
import { type HfConfig, parseHfConfig } from "../io/hf_config.ts";
import { type ModelShapes, modelShapes, paramsUnder, totalParams } from "../models/shapes.ts";
import { numel } from "../tensor/shape.ts";
import {
  type AdapterConfig,
  fourierftConfig,
  fourierftFrequencies,
  loraConfig,
  sshConfig,
} from "./config.ts";
import { resolveModulesToSave, resolveTargets } from "./targets.ts";

/** Trainable parameters of an adapter on a model. */
export interface TrainableCount {
  /** Adapted linear layers. */
  layers: number;
  /**
   * Adapter parameters: SSH n per layer, FourierFT n_frequency (or int(alpha·N·M)) per layer, LoRA
   * r·(in + out) per layer.
   */
  adapter: number;
  /** Parameters of the modules trained in full (modules_to_save, e.g. a classifier head). */
  modulesToSave: number;
  /** adapter + modulesToSave. */
  total: number;
}

/** The trainable parameters of `config` on `shapes`' model (targets resolved as PEFT does). */
export function trainableParams(shapes: ModelShapes, config: AdapterConfig): TrainableCount {
  const targets = resolveTargets(shapes, config);
  let adapter = 0;
  for (const l of targets) {
    switch (config.peftType) {
      case "SSH":
        adapter += config.n; // "global" moves positions between layers but keeps n·L in all
        break;
      case "FOURIERFT":
        adapter += fourierftFrequencies(config, l.outFeatures, l.inFeatures);
        break;
      case "LORA":
        adapter += config.r * (l.inFeatures + l.outFeatures);
        break;
    }
  }
  const modulesToSave = resolveModulesToSave(shapes, config)
    .reduce((s, m) => s + m.params.reduce((t, p) => t + numel(p.shape), 0), 0);
  return { layers: targets.length, adapter, modulesToSave, total: adapter + modulesToSave };
}

/**
 * Parameters trained by full fine-tuning: every parameter (tied ones once), or all but the
 * task head's with `excludeHead`.
 */
export function fullFineTuneParams(shapes: ModelShapes, opts: { excludeHead?: boolean } = {}): number {
  return totalParams(shapes) - (opts.excludeHead ? headParams(shapes) : 0);
}

/** Parameters of the task head (tied ones not counted, as they belong to the backbone). */
export function headParams(shapes: ModelShapes): number {
  return shapes.head.flatMap((h) => paramsUnder(shapes, h)).reduce(
    (s, p) => s + (p.tiedTo ? 0 : numel(p.shape)),
    0,
  );
}

/** A model of the paper's comparison, with the settings used there. */
export interface PaperModel {
  name: string;
  config: HfConfig;
  /** The transformers class counted (its head is excluded when it is a classifier). */
  architecture: string;
  targets: string[];
  /** SSH coefficients per layer. */
  sshN: number;
  /** Whether the head is a classifier trained alongside every method (excluded from the counts). */
  classifierHead: boolean;
}

/** RoBERTa's config.json fields (roberta-base/large on the Hugging Face hub; other vocabularies for tests). */
export function robertaConfigJson(
  hidden: number,
  layers: number,
  heads: number,
  intermediate: number,
  vocab = 50265,
) {
  return {
    model_type: "roberta",
    architectures: ["RobertaForMaskedLM"],
    vocab_size: vocab,
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: heads,
    intermediate_size: intermediate,
    max_position_embeddings: 514,
    type_vocab_size: 1,
    pad_token_id: 1,
    bos_token_id: 0,
    eos_token_id: 2,
    layer_norm_eps: 1e-5,
    hidden_act: "gelu",
  };
}

/** The four models of the comparison, from their published sizes. */
export function paperModels(): PaperModel[] {
  const gpt2Medium = {
    model_type: "gpt2",
    architectures: ["GPT2LMHeadModel"],
    vocab_size: 50257,
    n_positions: 1024,
    n_embd: 1024,
    n_layer: 24,
    n_head: 16,
  };
  // LLaMA-3.1-8B's RoPE scaling ("llama3") does not change any shape and is left out (the
  // config parser only accepts unscaled RoPE).
  const llama31_8b = {
    model_type: "llama",
    architectures: ["LlamaForCausalLM"],
    vocab_size: 128256,
    hidden_size: 4096,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    intermediate_size: 14336,
    max_position_embeddings: 131072,
    rope_theta: 500000,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    bos_token_id: 128000,
    eos_token_id: 128001,
  };
  const cls = "RobertaForSequenceClassification";
  return [
    {
      name: "RoBERTa-base",
      config: parseHfConfig(robertaConfigJson(768, 12, 12, 3072), "roberta-base (published sizes)"),
      architecture: cls,
      targets: ["query", "value"],
      sshN: 750,
      classifierHead: true,
    },
    {
      name: "RoBERTa-large",
      config: parseHfConfig(robertaConfigJson(1024, 24, 16, 4096), "roberta-large (published sizes)"),
      architecture: cls,
      targets: ["query", "value"],
      sshN: 750,
      classifierHead: true,
    },
    {
      name: "GPT-2 medium",
      config: parseHfConfig(gpt2Medium, "gpt2-medium (published sizes)"),
      architecture: "GPT2LMHeadModel",
      targets: ["c_attn"],
      sshN: 750,
      classifierHead: false,
    },
    {
      name: "LLaMA-3.1-8B",
      config: parseHfConfig(llama31_8b, "Llama-3.1-8B (published sizes)"),
      architecture: "LlamaForCausalLM",
      targets: ["q_proj", "v_proj"],
      sshN: 1000,
      classifierHead: false,
    },
  ];
}

/** One row of {@link paramTable}: counts per method. */
export interface ParamRow {
  model: PaperModel;
  layers: number;
  ssh: number;
  lora: number;
  fourierft: number;
  full: number;
  /** The classifier head's parameters (excluded from every count), or 0. */
  head: number;
}

/** The counts of the paper's settings: SSH, LoRA r=8, FourierFT n=1000 and full fine-tuning. */
export function paramRows(models: PaperModel[] = paperModels()): ParamRow[] {
  return models.map((model) => {
    const shapes = modelShapes(model.config, { architecture: model.architecture, numLabels: 2 });
    const targetModules = model.targets;
    const ssh = trainableParams(shapes, sshConfig({ n: model.sshN, targetModules }));
    return {
      model,
      layers: ssh.layers,
      ssh: ssh.total,
      lora: trainableParams(shapes, loraConfig({ r: 8, loraAlpha: 16, targetModules })).total,
      fourierft: trainableParams(shapes, fourierftConfig({ nFrequency: 1000, targetModules })).total,
      full: fullFineTuneParams(shapes, { excludeHead: model.classifierHead }),
      head: model.classifierHead ? headParams(shapes) : 0,
    };
  });
}

/** The comparison as a markdown table with footnotes. */
export function paramTable(rows: ParamRow[] = paramRows()): string {
  const cell = (count: number, full: number) => `${fmt(count)} (${pct(count / full)})`;
  const lines = [
    "| Model | Targets (adapted layers) | SSH | LoRA r=8 | FourierFT n=1000 | Full fine-tuning |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const mark = r.head > 0 ? "¹" : "²";
    lines.push(
      `| ${r.model.name} | ${r.model.targets.join(", ")} (${r.layers}) | n=${r.model.sshN}: ${
        cell(r.ssh, r.full)
      } | ` +
        `${cell(r.lora, r.full)} | ${cell(r.fourierft, r.full)} | ${fmt(r.full)}${mark} |`,
    );
  }
  const heads = rows.filter((r) => r.head > 0).map((r) => `${r.model.name} ${fmt(r.head)}`).join(", ");
  lines.push(
    "",
    "Percentages are of the full fine-tuning count. Trainable parameters only: SSH's and FourierFT's " +
      "positions are fixed, not trained.",
    "",
    `¹ Excluding the classification head (RobertaForSequenceClassification's classifier.dense + ` +
      `classifier.out_proj, 2 labels: ${heads}), which every method trains in full; the adapter ` +
      `columns exclude it too. This classifier is built without RoBERTa's pooler, so that is not counted either.`,
    "² The language-model head is counted in full fine-tuning (GPT-2's is tied to the token " +
      "embedding and counted once). GPT-2's c_attn is the fused query/key/value projection " +
      "(1024 → 3072), one adapted layer per block.",
  );
  return lines.join("\n");
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function pct(x: number): string {
  return `${(100 * x).toPrecision(3)}%`;
}
