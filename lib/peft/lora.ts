/**
 * LoRA (PEFT `LORA`) on one linear layer: `delta(x) = scaling · B (A dropout(x))` with
 * A [r, in] and B [out, r] as PEFT stores them (also for GPT-2's Conv1D: `fan_in_fan_out`
 * only changes how ΔW = scaling·B·A is laid into the stored weight on merge), and
 * scaling = lora_alpha / r (or / √r with rsLoRA).
 *
 * A new adapter is initialised as PEFT does (the random draws from this project's seeded
 * {@link Prng}, not torch's): `init_lora_weights` true — A ~ U(−1/√in, 1/√in) (kaiming-uniform
 * with a = √5), B = 0; "gaussian" — A ~ N(0, 1/r²), B = 0; false — A as for true and
 * B ~ U(−1/√r, 1/√r) (nn.Linear's default). Layer ℓ (in model order) draws A with seed
 * `seed + 2ℓ` and B with `seed + 2ℓ + 1`.
 *
 * Dropout (`lora_dropout`, train mode only) masks the adapter's input with the seeded mask of
 * (dropout seed, the model's step, site 0x4c000000 + 0x10000·c + ℓ), c counting the layer's
 * calls within that step (a gradient checkpoint's rerun counts afresh, so it draws the masks
 * of the first run). Keyed by the step (which the trainer sets, and restores on `--resume`),
 * the masks of a resumed run are those of an uninterrupted one.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { encodeMatmul } from "../linalg/matmul.ts";
import type { Linear } from "../nn/linear.ts";
import {
  currentReplay,
  dropout,
  type DropoutKey,
  type DropoutRows,
  keep,
  linear,
  matmul,
  reshape,
  Tensor,
} from "../tensor/mod.ts";
import { Prng } from "../spectral/prng.ts";
import type { LoraConfig } from "./config.ts";
import type { LoraModule } from "./files.ts";
import type { DeltaWeightOptions, PeftLayer } from "./layer.ts";
import { derivedSeed } from "./ssh.ts";

/** The dropout state the LoRA layers of one model share. */
export interface DropoutState {
  /** Dropout is applied in train mode only. */
  training: boolean;
  /** The run's dropout seed. */
  seed: number;
  /** The model's step (its train-mode forward count); masks are keyed by it. Default: 0. */
  step?: () => number;
}

/** Options of a {@link LoraLayer}. */
export interface LoraLayerOptions {
  /** The layer's weights (sizes must match the linear layer). */
  module: LoraModule;
  /** ΔW = scaling·B·A. */
  scaling: number;
  /** Dropout probability on the adapter's input (training only). */
  dropout?: number;
  /** Shared dropout state (default: a private one, eval mode). */
  dropoutState?: DropoutState;
  /** Distinguishes this layer's dropout masks from other layers'. */
  site?: number;
  path?: string;
}

/** LoRA on one linear layer. */
export class LoraLayer implements PeftLayer {
  readonly kind = "lora" as const;
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly rank: number;
  /** lora_A [r, in] (trainable). */
  readonly a: Tensor;
  /** lora_B [out, r] (trainable). */
  readonly b: Tensor;
  readonly scaling: number;
  readonly dropout: number;
  readonly dropoutState: DropoutState;
  readonly site: number;
  readonly path: string;
  /** Calls in train mode within the current step, and that step: each call draws a fresh mask. */
  #calls = 0;
  #step = -1;
  /** The checkpoint rerun being counted, and its calls so far. */
  #replay = -1;
  #replayCalls = 0;

  constructor(readonly gpu: Gpu, opts: LoraLayerOptions) {
    const { module } = opts;
    this.path = opts.path ?? "layer";
    const { outFeatures: m, inFeatures: n, r } = module;
    if (module.a.length !== r * n || module.b.length !== m * r) {
      throw new RangeError(
        `${this.path}: LoRA weights must be A [${r}, ${n}] and B [${m}, ${r}], got ${module.a.length} and ` +
          `${module.b.length} values`,
      );
    }
    if (!Number.isFinite(opts.scaling)) throw new RangeError(`${this.path}: LoRA scaling must be finite`);
    const p = opts.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new RangeError(`${this.path}: LoRA dropout must be in [0, 1), got ${p}`);
    this.outFeatures = m;
    this.inFeatures = n;
    this.rank = r;
    this.scaling = opts.scaling;
    this.dropout = p;
    this.dropoutState = opts.dropoutState ?? { training: false, seed: 0 };
    this.site = opts.site ?? 0;
    this.a = keep(Tensor.from(gpu, module.a, [r, n], { requiresGrad: true }));
    this.b = keep(Tensor.from(gpu, module.b, [m, r], { requiresGrad: true }));
  }

  /** scaling · B A dropout(x) for x [..., in] → [..., out] (recorded on the tape). */
  delta(x: Tensor, rows?: DropoutRows): Tensor {
    const { h, b, scale } = this.lowRank(x, rows);
    const y = matmul(h, b, { transB: true, alpha: scale });
    return x.shape.length === 1 ? reshape(y, [this.outFeatures]) : y;
  }

  /** h = dropout(x)·Aᵀ [tokens, r] (recorded on the tape), B and the scaling: delta(x) = scaling·h·Bᵀ. */
  lowRank(x: Tensor, rows?: DropoutRows): { h: Tensor; b: Tensor; scale: number } {
    const n = this.inFeatures;
    if (x.dtype !== "f32" || x.shape.length < 1 || x.shape[x.shape.length - 1] !== n) {
      throw new Error(`${this.path}: adapter input must be f32 [..., ${n}], got ${x.describe()}`);
    }
    const flat = x.shape.length === 1 ? reshape(x, [1, n]) : x;
    const s = this.dropoutState;
    let input = flat;
    if (s.training && this.dropout > 0) {
      const step = s.step?.() ?? 0;
      const key: DropoutKey = {
        seed: s.seed,
        step,
        site: 0x4c000000 + 0x10000 * this.#call(step) + this.site,
        ...(rows ? { rows } : {}),
      };
      input = dropout(flat, this.dropout, key);
    }
    return { h: linear(input, this.a), b: this.b, scale: this.scaling };
  }

  /**
   * This call's index within `step`. A gradient checkpoint's rerun of a layer counts from 0
   * again, as the layer's first run in the step did (each layer runs once per forward pass).
   */
  #call(step: number): number {
    const replay = currentReplay();
    if (replay !== null) {
      if (replay !== this.#replay) [this.#replay, this.#replayCalls] = [replay, 0];
      return this.#replayCalls++;
    }
    if (step !== this.#step) [this.#step, this.#calls] = [step, 0];
    return this.#calls++;
  }

  parameters(): Tensor[] {
    return [this.a, this.b];
  }

  /** ΔW = scaling·B·A (M×N), or ΔWᵀ = scaling·Aᵀ·Bᵀ (N×M) with `transposed`. */
  encodeDeltaWeight(dst: GPUBuffer, opts: DeltaWeightOptions = {}): void {
    const { gpu, outFeatures: m, inFeatures: n, rank: r } = this;
    const common = { alpha: this.scaling, accumulate: opts.accumulate ?? false };
    if (opts.transposed) {
      encodeMatmul(gpu, this.a.buffer, this.b.buffer, dst, n, m, r, {
        ...common,
        transA: true,
        transB: true,
      });
    } else {
      encodeMatmul(gpu, this.b.buffer, this.a.buffer, dst, m, n, r, common);
    }
  }

  async toModule(): Promise<LoraModule> {
    return {
      outFeatures: this.outFeatures,
      inFeatures: this.inFeatures,
      r: this.rank,
      a: Float32Array.from(await this.a.toArray()),
      b: Float32Array.from(await this.b.toArray()),
    };
  }

  /** Dropout follows the shared state; this sets it for every layer sharing it. */
  train(on: boolean): void {
    this.dropoutState.training = on;
  }

  dispose(): void {
    this.a.dispose();
    this.b.dispose();
  }
}

/** PEFT's scaling of `config`: lora_alpha / r, or lora_alpha / √r with rsLoRA. */
export function loraScaling(config: LoraConfig): number {
  return config.loraAlpha / (config.useRslora ? Math.sqrt(config.r) : config.r);
}

/**
 * A new LoRA module for an (out × in) layer, initialised per `init_lora_weights` (see the
 * module doc) with the seeds of layer ℓ = `index`.
 * @throws Error for PEFT inits that need data or other models (pissa, olora, loftq, eva, …).
 */
export function initLoraModule(
  config: LoraConfig,
  outFeatures: number,
  inFeatures: number,
  seed: number,
  index: number,
): LoraModule {
  const r = config.r, init = config.initLoraWeights;
  const uniform = (count: number, bound: number, s: number) => {
    const p = new Prng(s);
    return Float32Array.from({ length: count }, () => (2 * p.uniform() - 1) * bound);
  };
  const seedA = derivedSeed(seed, 2 * index), seedB = derivedSeed(seed, 2 * index + 1);
  let a: Float32Array;
  let b = new Float32Array(outFeatures * r);
  if (init === true || init === false) {
    a = uniform(r * inFeatures, 1 / Math.sqrt(inFeatures), seedA);
    if (init === false) b = uniform(outFeatures * r, 1 / Math.sqrt(r), seedB);
  } else if (init === "gaussian") {
    const p = new Prng(seedA);
    a = Float32Array.from({ length: r * inFeatures }, () => p.normal() / r);
  } else {
    throw new Error(
      `init_lora_weights "${init}" is not supported for a new adapter (use true, false or "gaussian")`,
    );
  }
  return { outFeatures, inFeatures, r, a, b };
}

/** A LoRA layer on `linear` from a module (sizes checked against the layer). */
export function loraLayer(
  gpu: Gpu,
  lin: Linear,
  module: LoraModule,
  config: LoraConfig,
  opts: { dropoutState?: DropoutState; site?: number } = {},
): LoraLayer {
  if (module.outFeatures !== lin.outFeatures || module.inFeatures !== lin.inFeatures) {
    throw new Error(
      `${lin.path}: the LoRA module was made for a ${module.outFeatures}×${module.inFeatures} layer ` +
        `(out×in), this layer is ${lin.outFeatures}×${lin.inFeatures}`,
    );
  }
  return new LoraLayer(gpu, {
    module,
    scaling: loraScaling(config),
    dropout: config.loraDropout,
    dropoutState: opts.dropoutState,
    site: opts.site,
    path: lin.path,
  });
}
