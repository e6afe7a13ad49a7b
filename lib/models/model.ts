/**
 * What every model family provides, so adapters, the trainer and the tools need not know the
 * family: the typed config, the named parameters (checkpoint keys), the linear layers by path,
 * and a forward pass from a batch to logits.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { HfConfig } from "../io/hf_config.ts";
import type { Linear } from "../nn/linear.ts";
import type { Tensor } from "../tensor/mod.ts";
import type { KvCache, KvCacheDtype } from "./kv_cache.ts";

/** The task head a model was built with. */
export type ModelTask = "causal-lm" | "seq-cls" | "token-cls" | "image-cls" | "base";

/** Model inputs; which fields are needed depends on the family. */
export interface Batch {
  /** Token ids [batch, seq] (i32, uploaded from the CPU: the embedding backward groups them there). */
  inputIds?: Tensor;
  /** The same ids on the CPU (row-major [batch, seq]). */
  inputIdsHost?: Int32Array;
  /** 1 for real tokens, 0 for padding [batch, seq] (CPU copy; masks are built from it). */
  attentionMask?: Int32Array;
  /** BERT's token type ids [batch, seq] (CPU). */
  tokenTypeIds?: Int32Array;
  /** ViT pixels [batch, channels, height, width] (f32). */
  pixelValues?: Tensor;
  /**
   * [batch, seq] (causal LM and token classification, −100 = ignore) or [batch]
   * (classification). Causal LM labels
   * follow HF: a copy of the input ids, shifted inside the loss (position t predicts label
   * t + 1), unless {@link nextTokenLabels}.
   */
  labels?: Tensor;
  /**
   * Causal LM labels already hold each position's next token (as CausalLmDataset/collate make
   * them): the loss is taken at every position, without HF's shift.
   */
  nextTokenLabels?: boolean;
}

/** What a forward pass returns. */
export interface ModelOutput {
  /**
   * [batch, seq, vocab] for causal LM; [batch, labels] for classification; [batch, seq, labels]
   * for token classification.
   */
  logits: Tensor;
  /**
   * HF's last `hidden_states` entry [batch, seq, hidden]: after the final norm for GPT-2 and
   * LLaMA (ln_f, norm), before it for ViT (whose classifier reads the normed copy). With
   * `headOnly`, possibly only the positions the head reads ({@link ForwardOptions}).
   */
  hidden: Tensor;
  /** The family's loss when `labels` were given (HF's definition: shifted next-token mean, or mean CE). */
  loss?: Tensor;
}

/** Options of {@link Model.forward}. */
export interface ForwardOptions {
  /**
   * Only the logits and the loss are wanted. A sequence classifier, whose head reads one
   * position per row ([CLS] / <s> for BERT, RoBERTa and ViT; the last non-pad token for GPT-2 and
   * LLaMA), then computes its last layer at that position alone: the same logits, loss and
   * gradients, with the same dropout masks, for about 1/layers less work. `hidden` then holds
   * that position only ([batch, 1, hidden]). A causal LM given labels on at most three quarters of
   * the positions (instruction data) computes its LM head at those alone: the same loss and
   * gradients, `logits` [targets, vocab].
   * Default false.
   */
  headOnly?: boolean;
  /**
   * A causal LM computes its logits at the batch's last position only ([batch, 1, vocab]: the
   * next token of rows without right padding), as generation needs, and no loss: the language-model head over the whole sequence would be
   * [batch, seq, vocab] floats (512 MB for 1,000 tokens of LLaMA 3's vocabulary). Default false.
   */
  lastLogits?: boolean;
  /**
   * A causal LM's key/value cache ({@link Model.newCache}): the batch holds only the tokens after
   * the cached ones, its rows unpadded; their keys and values join the cache. Inference only.
   */
  cache?: KvCache;
}

/** A loaded transformer. */
export interface Model {
  /** The device holding the model's tensors. */
  readonly gpu: Gpu;
  /**
   * The config's `model_type`: `gpt2`, `bert`, `roberta`, `distilbert`, `llama`, `mistral`, `qwen2`,
   * `qwen3`, `phi3` or `vit`.
   */
  readonly family: string;
  /** The task head the model was built with. */
  readonly task: ModelTask;
  /** The checkpoint's parsed config.json. */
  readonly config: HfConfig;
  /** Every parameter by its checkpoint key, in checkpoint storage layout. */
  readonly parameters: Map<string, Tensor>;
  /** Every linear layer by path (checkpoint key prefix), adapters attach here. */
  readonly linears: Map<string, Linear>;
  /**
   * Keys of the parameters the checkpoint lacked, which loadModel initialised (a task head new
   * to this checkpoint, e.g. a classifier on a language model); empty when it had them all.
   */
  readonly initialised: readonly string[];
  /** Train mode enables dropout; eval mode (the default after loading) disables it. */
  train(on: boolean): void;
  /** True in train mode. */
  readonly training: boolean;
  /**
   * Recompute each layer in backward instead of keeping its activations (default off): memory
   * for one layer's activations instead of all of them, for one more forward pass.
   */
  gradientCheckpointing: boolean;
  /**
   * A key/value cache for {@link ForwardOptions.cache}, empty, its keys and values stored as
   * `dtype` (default f32); the caller disposes it. Causal LMs only (GPT-2 and the LLaMA-built families).
   */
  newCache?(dtype?: KvCacheDtype): KvCache;
  /** One forward pass (recorded on the tape when gradients are on). */
  forward(batch: Batch, options?: ForwardOptions): ModelOutput;
  /**
   * Release every GPU buffer the model holds: its parameters, the weight stacks kept for training
   * (`fusedProjection`), and the adapters on its linear layers, attached or merged (a
   * `PeftModel` of it can then only be detached). The buffers go back to the device's pool,
   * which hands them out again; `gpu.pool.trim()` returns the pool's free buffers to the device.
   */
  dispose(): void;
}
