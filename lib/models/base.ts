/**
 * What every family's model shares: the {@link Model} bookkeeping (parameters, linear layers,
 * train/eval mode, dispose), seeded dropout that is a no-op in eval mode, the token classifiers'
 * head, and reading the token inputs of a batch.
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import type { HfConfig } from "../io/hf_config.ts";
import { releaseStacks } from "../nn/fused_linear.ts";
import { Linear } from "../nn/linear.ts";
import { tokenClassificationLoss } from "../nn/loss.ts";
import type { LayerNorm, RmsNorm } from "../nn/norm.ts";
import {
  add,
  checkpoint,
  dropout,
  dropoutAdd,
  type DropoutRows,
  type DropoutSpec,
  isGradEnabled,
  type Tensor,
  tidy,
} from "../tensor/mod.ts";
import type { Batch, ForwardOptions, Model, ModelOutput, ModelTask } from "./model.ts";
import type { BuildContext } from "./registry.ts";

/** A family's model: subclasses build their layers in the constructor and implement forward. */
export abstract class BaseModel implements Model {
  readonly gpu: Gpu;
  readonly task: ModelTask;
  readonly parameters: Map<string, Tensor>;
  readonly linears: Map<string, Linear>;
  readonly initialised: readonly string[];
  /** Seed of the dropout masks (train mode). */
  dropoutSeed = 0;
  #training = false;
  /**
   * Train-mode forward passes so far: with {@link dropoutSeed} it keys the dropout masks. A
   * resumed training run sets it to the optimiser step, so masks match an uninterrupted run.
   */
  dropoutStep = 0;
  /**
   * Keep only each layer's input during forward and recompute the layer in backward (less
   * memory: one layer's activations at a time, for one more forward pass of compute).
   */
  gradientCheckpointing = false;

  constructor(readonly family: string, readonly config: HfConfig, ctx: BuildContext) {
    this.gpu = ctx.gpu;
    this.task = ctx.task;
    this.parameters = ctx.weights.params;
    this.initialised = ctx.weights.initialised;
    this.linears = new Map(ctx.shapes.linears.map((s) => [s.path, Linear.from(this.parameters, s)]));
  }

  /** True in train mode. */
  get training(): boolean {
    return this.#training;
  }

  train(on: boolean): void {
    this.#training = on;
  }

  abstract forward(batch: Batch, options?: ForwardOptions): ModelOutput;

  dispose(): void {
    releaseStacks(this.linears.values());
    for (const l of this.linears.values()) l.disposeAdapters();
    for (const t of this.parameters.values()) t.dispose();
    this.parameters.clear();
    this.linears.clear();
  }

  /** The linear layer at `path` (a key of `linears`). */
  protected linear(path: string): Linear {
    const l = this.linears.get(path);
    if (!l) throw new Error(`${this.family}: no linear layer "${path}" in the model's shapes`);
    return l;
  }

  /** Count a forward pass (call once at its start): dropout masks differ between passes. */
  protected nextStep(): void {
    if (this.#training) this.dropoutStep++;
  }

  /**
   * One layer, `fn(x, mask, saved)`: in a tidy scope, or through {@link checkpoint} when
   * {@link gradientCheckpointing} is on and gradients are recorded. The rerun in backward sees
   * the dropout step and mode of the forward pass, so it draws the same masks. `parts` are the
   * layer's linear layers and norms: when neither x nor any of them trains, the layer records
   * nothing to recompute (training the head alone). `saved` are the other tensors `fn` reads
   * (a pooled classifier's key mask): `fn` must read them from its arguments, not its closure,
   * since the caller may free its own before backward reruns the layer.
   */
  protected runLayer(
    x: Tensor,
    mask: Tensor | null,
    parts: readonly (Linear | LayerNorm | RmsNorm)[],
    fn: (x: Tensor, mask: Tensor | null, saved: Tensor[]) => Tensor,
    saved: Tensor[] = [],
  ): Tensor {
    const recompute = this.gradientCheckpointing && isGradEnabled() && (x.requiresGrad || parts.some(trains));
    if (!recompute) return tidy(() => fn(x, mask, saved));
    const step = this.dropoutStep, training = this.#training;
    const replay = (h: Tensor, ...more: Tensor[]) => {
      const now = [this.dropoutStep, this.#training] as const;
      [this.dropoutStep, this.#training] = [step, training];
      try {
        return mask ? fn(h, more[0], more.slice(1)) : fn(h, null, more);
      } finally {
        [this.dropoutStep, this.#training] = now;
      }
    };
    return checkpoint(replay, x, ...(mask ? [mask] : []), ...saved);
  }

  /** Dropout with probability `p` at call site `site` in train mode; `x` itself in eval mode. */
  protected dropout(x: Tensor, p: number, site: number): Tensor {
    if (!this.#training || p === 0) return x;
    return dropout(x, p, { seed: this.dropoutSeed, step: this.dropoutStep, site });
  }

  /** `residual + this.dropout(x, p, site)`, in one pass in train mode (`rows`: see {@link dropoutSpec}). */
  protected dropoutAdd(x: Tensor, residual: Tensor, p: number, site: number, rows?: DropoutRows): Tensor {
    const spec = this.dropoutSpec(p, site, rows);
    return spec ? dropoutAdd(x, residual, p, spec.key) : add(x, residual);
  }

  /** `norm(residual + this.dropout(x, p, site))` in one pass (a post-LN residual connection). */
  protected residualNorm(
    norm: LayerNorm,
    x: Tensor,
    residual: Tensor,
    p: number,
    site: number,
    rows?: DropoutRows,
  ): Tensor {
    return norm.forwardResidual(x, residual, this.dropoutSpec(p, site, rows));
  }

  /**
   * A token classifier's logits at every position, `head(dropout(hidden))` with probability `p`
   * at `site` (transformers' *ForTokenClassification), and their loss when the batch has labels.
   */
  protected tokenClassify(head: Linear, hidden: Tensor, batch: Batch, p: number, site: number): ModelOutput {
    const logits = head.forward(this.dropout(hidden, p, site));
    return { logits, hidden, loss: batch.labels ? tokenClassificationLoss(logits, batch.labels) : undefined };
  }

  /**
   * {@link dropout} at `site` for an op to apply itself, or null where it is the identity (eval
   * mode, p = 0). `rows`: the op holds only those rows of the site's tensor (`DropoutKey.rows`).
   */
  protected dropoutSpec(p: number, site: number, rows?: DropoutRows): DropoutSpec | null {
    return this.#training && p > 0
      ? { p, key: { seed: this.dropoutSeed, step: this.dropoutStep, site, ...(rows ? { rows } : {}) } }
      : null;
  }
}

/** Whether a layer's part has a tensor that trains (its weight, bias or adapter). */
function trains(part: Linear | LayerNorm | RmsNorm): boolean {
  const own = [part.weight, ...("bias" in part && part.bias ? [part.bias] : [])];
  const adapter = part instanceof Linear ? part.adapter?.parameters() ?? [] : [];
  return [...own, ...adapter].some((t) => t.requiresGrad);
}

/** The token inputs of a batch: ids [b, t] (i32 tensor), their host copy, and the sizes. */
export function tokenInputs(
  batch: Batch,
  family: string,
  maxPositions?: number,
): { ids: Tensor; host: Int32Array | undefined; b: number; t: number } {
  const ids = batch.inputIds;
  if (!ids) throw new Error(`${family}: the batch has no inputIds`);
  if (ids.dtype !== "i32" || ids.shape.length !== 2 || ids.shape[1] === 0) {
    throw new Error(`${family}: inputIds must be i32 [batch, seq] with seq ≥ 1, got ${ids.describe()}`);
  }
  const [b, t] = ids.shape;
  if (maxPositions !== undefined && t > maxPositions) {
    throw new Error(`${family}: ${t} tokens per row is more than the model's ${maxPositions} positions`);
  }
  return { ids, host: batch.inputIdsHost ?? ids.host, b, t };
}

/**
 * The dropout before a decoder's token classifier: classifier_dropout, else hidden_dropout, else
 * 0.1 (GPT2ForTokenClassification, LlamaForTokenClassification).
 */
export function decoderClassifierDropout(config: HfConfig): number {
  return rawNumber(config, "classifier_dropout", rawNumber(config, "hidden_dropout", 0.1));
}

/** A number from the raw config.json (dropout probabilities), or `fallback`. */
export function rawNumber(config: HfConfig, field: string, fallback: number): number {
  const v = config.raw[field];
  return typeof v === "number" ? v : fallback;
}
