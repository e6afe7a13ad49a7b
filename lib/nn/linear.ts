/**
 * A linear layer of a loaded model, with a slot for one adapter. The weight keeps the
 * checkpoint's storage orientation (GPT-2's Conv1D stores (in, out)); `outFeatures` and
 * `inFeatures` are always the logical (out, in) sizes that adapters and SPEC §1.1 use.
 * @module
 */
import type { LinearShape } from "../models/shapes.ts";
import { add, type DropoutRows, linear, type Tensor } from "../tensor/mod.ts";
import { param } from "./norm.ts";

/** A parameter-efficient update attached to a {@link Linear} (SSH, LoRA, FourierFT). */
export interface LinearAdapter {
  /** Method name, e.g. `ssh`. */
  readonly kind: string;
  /**
   * The update's contribution `ΔW x` for input x [..., in] → [..., out] (recorded on the tape).
   * `rows`: x holds only these rows of the layer's usual input (`DropoutKey.rows`), and an
   * adapter with dropout on x draws that input's masks there.
   */
  delta(x: Tensor, rows?: DropoutRows): Tensor;
  /** The adapter's trainable tensors. */
  parameters(): Tensor[];
  /**
   * The whole layer's output for x, recorded on the tape, when the adapter has a cheaper
   * route than `x Wᵀ + b + delta(x)` for this input (SSH folds ΔW into a copy of a small W);
   * null to take that sum.
   */
  apply?(layer: Linear, x: Tensor, rows?: DropoutRows): Tensor | null;
  /**
   * When the adapter folds ΔW into the weight for `tokens` tokens (SSH and FourierFT on small
   * layers): write W + ΔW into `dst` (f32, in the layer's storage layout from element `at`) and
   * say how to train through it; else null, leaving `dst` as it was. This lets the layer share
   * one product with others (`fusedProjection`). `written`: dst holds W + ΔW of the current
   * weight and trainable tensor already (a fold since neither changed), so only say how to train.
   */
  fold?(layer: Linear, tokens: number, dst: Tensor, at: number, written?: boolean): FoldedUpdate | null;
  /**
   * A low-rank update, `delta(x) = scale·h·Bᵀ` with h [..., r] recorded on the tape (after any
   * dropout on x) and B [out, r] (LoRA): a shared product (`fusedProjection`) then adds it into
   * its output's columns itself.
   */
  lowRank?(x: Tensor, rows?: DropoutRows): { h: Tensor; b: Tensor; scale: number };
  /** Release the adapter's GPU buffers (a model's dispose calls it: {@link Linear.disposeAdapters}). */
  dispose?(): void;
}

/** How an adapter folded into a weight (see {@link LinearAdapter.fold}) is trained. */
export interface FoldedUpdate {
  /** The adapter's trainable tensor. */
  param: Tensor;
  /**
   * ∂L/∂param from the layer's input x [tokens, in] and its output gradient: dy [tokens, out],
   * or with `at`, the columns [at, at + out) of a wider dy (the layer's part of a stacked
   * gradient, read in place). Adapters of one x share work through `shared` (SSH's transform
   * of x), which lives as long as the gradient rule that calls them.
   */
  gradient(x: Tensor, dy: Tensor, shared: Map<string, Tensor>, at?: number): Tensor;
}

/** Storage orientation of a weight: nn.Linear (out, in) or Conv1D (in, out). */
export type WeightLayout = "out_in" | "in_out";

/** A linear layer `y = x Wᵀ + b (+ adapter.delta(x))`. */
export class Linear {
  /** The attached adapter; null for a plain layer or while merged. */
  adapter: LinearAdapter | null = null;
  /**
   * Adapters whose ΔW is merged into the weight (`PeftModel.merge`): the layer runs without them
   * but holds them, to attach again when unmerged and to free in {@link Linear.disposeAdapters}.
   * While it holds one, no adapter attaches to the layer (`attachAdapter` and `applyAdapter` refuse).
   */
  readonly merged: LinearAdapter[] = [];
  /**
   * How many adapters left their ΔW in the weight when detached (`detach({ keepMerged: true })`):
   * the weight then differs from its checkpoint's, which `writeMergedModel` reads.
   */
  keptMerges = 0;

  /**
   * A layer over `weight` (2-D, stored as `layout`) and an optional `bias` [out], with no adapter.
   * Throws when the weight is not 2-D or the bias does not match the output features.
   */
  constructor(
    /** The checkpoint key prefix, e.g. `transformer.h.0.attn.c_attn`. */
    readonly path: string,
    public weight: Tensor,
    public bias: Tensor | null,
    readonly layout: WeightLayout = "out_in",
  ) {
    if (weight.shape.length !== 2) throw new Error(`${path}.weight: expected 2-D, got ${weight.describe()}`);
    if (bias && bias.shape[0] !== this.outFeatures) {
      throw new Error(`${path}.bias: expected [${this.outFeatures}], got ${bias.describe()}`);
    }
  }

  /**
   * The layer `shape` (from `modelShapes`) over loaded parameters: `<path>.weight` (or the
   * tensor it is tied to) and `<path>.bias` when the layer has one.
   */
  static from(params: ReadonlyMap<string, Tensor>, shape: LinearShape): Linear {
    const weight = param(params, shape.tiedTo ?? `${shape.path}.weight`);
    const bias = shape.bias ? param(params, `${shape.path}.bias`) : null;
    return new Linear(shape.path, weight, bias, shape.storage);
  }

  /** out_features M. */
  get outFeatures(): number {
    return this.layout === "out_in" ? this.weight.shape[0] : this.weight.shape[1];
  }

  /** in_features N. */
  get inFeatures(): number {
    return this.layout === "out_in" ? this.weight.shape[1] : this.weight.shape[0];
  }

  /**
   * Release the adapters the layer holds, attached or merged, and forget them (a model's dispose;
   * the weight and bias are the model's parameters, freed with them).
   */
  disposeAdapters(): void {
    for (const a of [this.adapter, ...this.merged]) a?.dispose?.();
    this.adapter = null;
    this.merged.length = 0;
  }

  /** x [..., in] → [..., out] (`rows`: see {@link LinearAdapter.delta}). */
  forward(x: Tensor, rows?: DropoutRows): Tensor {
    const adapted = this.adapter?.apply?.(this, x, rows);
    if (adapted) return adapted;
    const y = linear(x, this.weight, this.bias, { weightLayout: this.layout });
    return this.adapter ? add(y, this.adapter.delta(x, rows)) : y;
  }
}
