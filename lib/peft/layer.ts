/**
 * What every adapter layer (SSH, FourierFT, LoRA) provides beyond {@link LinearAdapter}: its
 * size, its dense update ΔW for merging, and its weights for saving.
 * @module
 */
import type { LinearAdapter } from "../nn/linear.ts";
import type { FourierFTModule, LoraModule, SSHModule } from "./files.ts";

/** Options of {@link PeftLayer.encodeDeltaWeight}. */
export interface DeltaWeightOptions {
  /** Write ΔWᵀ (in × out, GPT-2 Conv1D storage) instead of ΔW (out × in). */
  transposed?: boolean;
  /** Add to `dst` instead of overwriting it. */
  accumulate?: boolean;
}

/** An adapter attached to one linear layer. */
export interface PeftLayer extends LinearAdapter {
  /** `ssh`, `fourierft` or `lora`. */
  readonly kind: "ssh" | "fourierft" | "lora";
  /** out_features M. */
  readonly outFeatures: number;
  /** in_features N. */
  readonly inFeatures: number;
  /** Encode the dense update ΔW (f32, M×N row-major, or N×M with `transposed`) into `dst`. */
  encodeDeltaWeight(dst: GPUBuffer, opts?: DeltaWeightOptions): void;
  /** The layer's weights as the adapter file holds them (reads back: not inside a step). */
  toModule(): Promise<SSHModule | FourierFTModule | LoraModule>;
  /** Train mode (dropout on) or eval mode. */
  train(on: boolean): void;
  /** Release the layer's GPU buffers. */
  dispose(): void;
}
