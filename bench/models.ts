/**
 * Models at real shapes without their weights, for step benchmarks: a config.json written to
 * a temporary folder and a lazy source of random weights (transformers' init rule, with uniform
 * values of the init's standard deviation instead of normals: cheap to make at 7B shapes, and
 * the values do not change the time of a step). The shapes are
 * those of ../shared/device/torch_anchor.py and anchor2.py, the demo's, and small stand-ins for
 * software adapters.
 * @module
 */
import { join } from "node:path";
import type { Gpu } from "../lib/gpu/mod.ts";
import type { Dtype, TypedArray } from "../lib/io/dtype.ts";
import { parseHfConfig } from "../lib/io/hf_config.ts";
import type { TensorInfo, TensorSource } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { modelShapes } from "../lib/models/shapes.ts";
import { type InitKind, initKind } from "../lib/nn/init.ts";
import type { WeightDtype } from "../lib/nn/load.ts";
import { initStd } from "../lib/train/init.ts";
import { robertaConfigJson } from "../lib/peft/param_count.ts";
import type { TaskName } from "../lib/train/tasks.ts";
import { uniformValues } from "./stats.ts";

/** A benchmark model: its config, task, batch shape and adapter targets. */
export interface BenchModel {
  name: string;
  config: Record<string, unknown>;
  task: TaskName;
  batch: number;
  seq: number;
  /** Adapter targets (a list, or PEFT's "all-linear"). */
  targets: string[] | string;
  /** SSH coefficients per layer (FourierFT gets `fourierftN`). */
  sshN: number;
  fourierftN: number;
  /** Causal LM: the share of each row's last tokens that are learnt (instruction data); default all. */
  learnt?: number;
}

const roberta = (hidden: number, layers: number, heads: number, vocab: number) => ({
  ...robertaConfigJson(hidden, layers, heads, 4 * hidden, vocab),
  architectures: ["RobertaForSequenceClassification"],
  initializer_range: 0.02,
  id2label: { 0: "LABEL_0", 1: "LABEL_1" },
  label2id: { LABEL_0: 0, LABEL_1: 1 },
});

const llama = (hidden: number, mlp: number, heads: number, vocab: number) => ({
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  vocab_size: vocab,
  hidden_size: hidden,
  intermediate_size: mlp,
  num_hidden_layers: 1,
  num_attention_heads: heads,
  num_key_value_heads: heads,
  max_position_embeddings: 1024,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  hidden_act: "silu",
  tie_word_embeddings: false,
  initializer_range: 0.02,
});

/** The models `bench/step.ts` knows, by name. */
export const BENCH_MODELS: Record<string, BenchModel> = {
  // RoBERTa-base, batch 32 × 128, adapters on query and value (torch_anchor.py)
  "roberta-base": {
    name: "roberta-base",
    config: roberta(768, 12, 12, 50265),
    task: "seq-cls",
    batch: 32,
    seq: 128,
    targets: ["query", "value"],
    sshN: 750,
    fourierftN: 1000,
  },
  // one LLaMA-7B decoder layer, batch 4 × 512, adapters on q_proj and v_proj (anchor2.py)
  "llama7b-layer": {
    name: "llama7b-layer",
    config: llama(4096, 11008, 32, 32000),
    task: "causal-lm",
    batch: 4,
    seq: 512,
    targets: ["q_proj", "v_proj"],
    sshN: 1000,
    fourierftN: 1000,
  },
  // the demo's step (`deno task demo`): models/default's shape, SSH n=500 on every linear layer
  "demo": {
    name: "demo",
    config: {
      architectures: ["GPT2ForSequenceClassification"],
      model_type: "gpt2",
      activation_function: "gelu_new",
      n_layer: 2,
      n_embd: 64,
      n_head: 4,
      n_inner: 256,
      n_positions: 128,
      vocab_size: 512,
      pad_token_id: 0,
      initializer_range: 0.02,
      id2label: { 0: "ham", 1: "spam" },
      label2id: { ham: 0, spam: 1 },
    },
    task: "seq-cls",
    batch: 16,
    seq: 32,
    targets: "all-linear",
    sshN: 500,
    fourierftN: 500,
  },
  // software-adapter stand-ins of the two
  "roberta-small": {
    name: "roberta-small",
    config: roberta(64, 2, 4, 1000),
    task: "seq-cls",
    batch: 4,
    seq: 32,
    targets: ["query", "value"],
    sshN: 750,
    fourierftN: 1000,
  },
  "llama-small": {
    name: "llama-small",
    config: llama(128, 344, 4, 1000),
    task: "causal-lm",
    batch: 2,
    seq: 32,
    targets: ["q_proj", "v_proj"],
    sshN: 1000,
    fourierftN: 1000,
  },
  // long sequences on a small decoder (4 layers, grouped-query heads): what the memory features save
  "llama-long": {
    name: "llama-long",
    config: {
      ...llama(128, 344, 8, 1000),
      num_hidden_layers: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 2048,
    },
    task: "causal-lm",
    batch: 1,
    seq: 2048,
    targets: ["q_proj", "v_proj"],
    sshN: 1000,
    fourierftN: 1000,
  },
  // instruction tuning with a large vocabulary: 12.5% of each row learnt (a completion after its
  // prompt), where the LM head at the targets alone (`--no-fuse=head` turns it off) saves the most
  "sft-small": {
    name: "sft-small",
    config: llama(128, 344, 4, 16384),
    task: "causal-lm",
    batch: 4,
    seq: 128,
    targets: ["q_proj", "v_proj"],
    sshN: 1000,
    fourierftN: 1000,
    learnt: 0.125,
  },
  // Qwen2.5-0.5B's widths and vocabulary (one layer), batch 8 × 512, 12.5% learnt
  "qwen-sft-layer": {
    name: "qwen-sft-layer",
    config: { ...llama(896, 4864, 14, 151936), num_key_value_heads: 2, tie_word_embeddings: true },
    task: "causal-lm",
    batch: 8,
    seq: 512,
    targets: ["q_proj", "v_proj"],
    sshN: 1000,
    fourierftN: 1000,
    learnt: 0.125,
  },
};

/** Random weights of every parameter of a config's architecture, made when read. */
class RandomSource implements TensorSource {
  readonly path = "random weights";
  readonly metadata = {};
  readonly names: string[];
  #params = new Map<string, { shape: number[]; kind: InitKind; std: number; index: number }>();

  constructor(config: Record<string, unknown>, private readonly seed: number) {
    const parsed = parseHfConfig(config, "config.json");
    for (const p of modelShapes(parsed, { architecture: parsed.architectures[0] }).params) {
      if (p.tiedTo) continue;
      const entry = {
        shape: p.shape,
        kind: initKind(p.key),
        std: initStd(p.key, parsed),
        index: this.#params.size,
      };
      this.#params.set(p.key, entry);
    }
    this.names = [...this.#params.keys()];
  }

  has(name: string): boolean {
    return this.#params.has(name);
  }

  info(name: string): TensorInfo {
    const p = this.#params.get(name);
    if (!p) throw new Error(`random weights: no tensor "${name}"`);
    return { dtype: "F32" as Dtype, shape: p.shape, byteLength: 4 * p.shape.reduce((a, b) => a * b, 1) };
  }

  read(name: string): Promise<TypedArray> {
    return this.readF32(name);
  }

  readF32(name: string): Promise<Float32Array> {
    const p = this.#params.get(name)!;
    const count = p.shape.reduce((a, b) => a * b, 1);
    if (p.kind !== "random") return Promise.resolve(new Float32Array(count).fill(p.kind === "ones" ? 1 : 0));
    return Promise.resolve(uniformValues(count, p.std, this.seed * 7919 + p.index));
  }
}

/** Load `m` with random weights (f32, or f16 storage of the frozen matrices). */
export async function loadBenchModel(gpu: Gpu, m: BenchModel, dtype: WeightDtype = "f32"): Promise<Model> {
  const dir = await Deno.makeTempDir({ prefix: `hartley-bench-${m.name}-` });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(m.config));
    return await loadModel(gpu, dir, { task: m.task, dtype, source: new RandomSource(m.config, 1) });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
