/**
 * Fused AdamW on the GPU with parameter groups and gradient clipping by global norm, all
 * encoded into the stream without readbacks. Step-dependent scalars (each parameter's
 * learning rate, weight-decay factor and bias corrections) go to the GPU through one small
 * storage buffer written with `gpu.stream.write` per step, so pipelines never change.
 * @module
 */
import {
  adamwMultiKernel,
  clipScaleKernel,
  MULTI_SLOTS,
  NORM_SUM_WG,
  sumSquaresMultiKernel,
} from "../../kernels/adamw.ts";
import { type Gpu, grid } from "../gpu/mod.ts";
import { unitBands, unitBinding } from "../gpu/bands.ts";
import { keep } from "../tensor/scope.ts";
import { Tensor } from "../tensor/tensor.ts";

/** A set of parameters sharing a learning rate and weight decay. */
export interface ParamGroup {
  /** The group's tensors: f32 leaves with requiresGrad, each in one group only. */
  params: readonly Tensor[];
  /** Base learning rate of the group; default the optimiser's. */
  lr?: number;
  /** Decoupled weight decay of the group; default the optimiser's. */
  weightDecay?: number;
}

/** Hyper-parameters of {@link AdamW} (PyTorch's defaults, except weight decay 0). */
export interface AdamWOptions {
  /** Base learning rate (before the schedule factor passed to step()). */
  lr: number;
  /** Decay rates (β1, β2) of the first and second moment averages; default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** ε added to the denominator √v̂ for numerical stability; default 1e-8. */
  eps?: number;
  /** Decoupled weight decay of groups that set none; default 0. */
  weightDecay?: number;
  /** Clip gradients to this global L2 norm before the update (off when absent). */
  maxGradNorm?: number;
}

interface Slot {
  param: Tensor;
  group: number;
  m: Tensor;
  v: Tensor;
  /** Updates applied to this parameter (PyTorch's per-parameter `step`). */
  steps: number;
}

/** Most partial sums one parameter contributes to the global norm. */
const MAX_NORM_GROUPS = 256;

/**
 * AdamW with decoupled weight decay and bias correction (PyTorch's `torch.optim.AdamW`).
 *
 * ```ts
 * import type { Gpu } from "../gpu/mod.ts";
 * import type { Tensor } from "../tensor/mod.ts";
 * import { lrFactor } from "./schedule.ts";
 * declare const gpu: Gpu, weights: Tensor[], biases: Tensor[], loss: Tensor, step: number;
 * const opt = new AdamW(gpu, [{ params: weights, weightDecay: 0.01 }, { params: biases, weightDecay: 0 }],
 *   { lr: 3e-4, maxGradNorm: 1 });
 * loss.backward();
 * opt.step(lrFactor(step, { warmupSteps: 100, totalSteps: 1000 }));
 * opt.zeroGrad();
 * ```
 */
export class AdamW {
  /** Base learning rate and weight decay of each group, in the order given (defaults filled in). */
  readonly groups: { lr: number; weightDecay: number }[];
  /** β1: decay rate of the first moment average. */
  readonly beta1: number;
  /** β2: decay rate of the second moment average. */
  readonly beta2: number;
  /** ε added to the denominator. */
  readonly eps: number;
  /** Global L2 norm gradients are clipped to; undefined when clipping is off. */
  readonly maxGradNorm: number | undefined;
  #slots: Slot[] = [];
  #hyper: Tensor;
  #norm: Tensor;
  #hyperData: Float32Array;

  /**
   * An optimiser over `params` (a plain tensor list is one group) with zeroed moments. Throws when
   * a parameter is not an f32 leaf with requiresGrad or appears twice, or when `maxGradNorm` is not
   * positive.
   */
  constructor(readonly gpu: Gpu, params: readonly Tensor[] | readonly ParamGroup[], opts: AdamWOptions) {
    const groups: readonly ParamGroup[] = params.length > 0 && params[0] instanceof Tensor
      ? [{ params: params as readonly Tensor[] }]
      : params as readonly ParamGroup[];
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.maxGradNorm = opts.maxGradNorm;
    if (this.maxGradNorm !== undefined && !(this.maxGradNorm > 0)) {
      throw new Error(`AdamW: maxGradNorm must be positive, got ${this.maxGradNorm}`);
    }
    this.groups = groups.map((g) => ({
      lr: g.lr ?? opts.lr,
      weightDecay: g.weightDecay ?? opts.weightDecay ?? 0,
    }));
    const seen = new Set<Tensor>();
    groups.forEach((g, gi) => {
      for (const p of g.params) {
        if (!p.requiresGrad || p.dtype !== "f32" || !p.isLeaf) {
          throw new Error(`AdamW: parameter ${p.describe()} must be an f32 leaf with requiresGrad`);
        }
        if (seen.has(p)) throw new Error(`AdamW: parameter ${p.describe()} appears twice`);
        seen.add(p);
        const m = keep(Tensor.zeros(gpu, p.shape)), v = keep(Tensor.zeros(gpu, p.shape));
        this.#slots.push({ param: p, group: gi, m, v, steps: 0 });
      }
    });
    this.#hyperData = new Float32Array(Math.max(1, this.#slots.length) * 3);
    this.#hyper = keep(Tensor.zeros(gpu, [this.#hyperData.length]));
    this.#norm = keep(Tensor.from(gpu, [0, 1], [2]));
  }

  /** The parameters, in update order. */
  get params(): Tensor[] {
    return this.#slots.map((s) => s.param);
  }

  /**
   * [global gradient norm, clip scale] of the last step() with clipping (read it with
   * `readLater()` for logs); [0, 1] before.
   */
  get gradNorm(): Tensor {
    return this.#norm;
  }

  /**
   * Encode one update of every parameter that has a gradient, with learning rate
   * `group.lr · lrFactor` (the schedule's factor). Parameters without a gradient are skipped,
   * as in PyTorch. Nothing is submitted or read back.
   */
  step(lrFactor = 1): void {
    const live = this.#slots.map((s, i) => ({ s, i })).filter(({ s }) => s.param.grad);
    if (live.length === 0) return;
    for (const { s, i } of live) {
      s.steps++;
      const { lr: base, weightDecay } = this.groups[s.group];
      const lr = base * lrFactor;
      this.#hyperData[3 * i] = 1 - lr * weightDecay;
      this.#hyperData[3 * i + 1] = lr / (1 - this.beta1 ** s.steps);
      this.#hyperData[3 * i + 2] = 1 / Math.sqrt(1 - this.beta2 ** s.steps);
    }
    const gpu = this.gpu;
    gpu.stream.write(this.#hyper.buffer, this.#hyperData);
    if (this.maxGradNorm !== undefined) this.#encodeClip(live.map(({ s }) => s.param.grad!));
    // one slot a parameter (a band of one, for an embedding table over one storage binding)
    const slots = live.flatMap(({ s, i }) => {
      const tensors = [s.param, s.param.grad!, s.m, s.v];
      return unitBands(gpu, s.param.size, tensors.map((t) => [t.buffer, 4])).map((band) => ({
        bindings: tensors.map((t) => unitBinding(gpu, t.buffer, 4, band)),
        n: band.count,
        hyper: i,
      }));
    });
    const most = Math.min(MULTI_SLOTS, Math.floor((gpu.limits.maxStorageBuffersPerShaderStage - 2) / 4));
    for (const chunk of chunks(slots, most)) {
      const params = new Uint32Array(4 * chunk.length + 4);
      let groups = 0;
      chunk.forEach((slot, k) => {
        params.set([slot.n, slot.hyper, groups], 4 * k);
        groups += Math.ceil(slot.n / 256);
      });
      new Float32Array(params.buffer).set([this.beta1, this.beta2, this.eps], 4 * chunk.length);
      gpu.stream.dispatch(
        adamwMultiKernel(chunk.length),
        [...chunk.flatMap((slot) => slot.bindings), this.#hyper.buffer, this.#norm.buffer],
        grid(gpu, groups),
        params,
      );
    }
    for (const { s } of live) s.param.touch();
  }

  /**
   * Global norm of `grads` into the norm buffer: partial sums per parameter (per band of one over a
   * storage binding), several parameters a dispatch, then one total.
   */
  #encodeClip(grads: Tensor[]): void {
    const gpu = this.gpu;
    const slots = grads.flatMap((g) =>
      unitBands(gpu, g.size, [[g.buffer, 4]]).map((band) => ({
        binding: unitBinding(gpu, g.buffer, 4, band),
        n: band.count,
        groups: Math.max(1, Math.min(MAX_NORM_GROUPS, Math.ceil(band.count / (NORM_SUM_WG * 8)))),
      }))
    );
    const total = slots.reduce((a, j) => a + j.groups, 0);
    const partials = Tensor.empty(gpu, [total]);
    const most = Math.min(MULTI_SLOTS, gpu.limits.maxStorageBuffersPerShaderStage - 1);
    let at = 0;
    for (const chunk of chunks(slots, most)) {
      const params = new Uint32Array(4 * chunk.length);
      let groups = 0;
      chunk.forEach((slot, k) => {
        params.set([slot.n, at, groups, slot.groups], 4 * k);
        at += slot.groups;
        groups += slot.groups;
      });
      gpu.stream.dispatch(
        sumSquaresMultiKernel(chunk.length),
        [...chunk.map((slot) => slot.binding), partials.buffer],
        grid(gpu, groups),
        params,
      );
    }
    const p = new Uint32Array(2);
    p[0] = total;
    new Float32Array(p.buffer)[1] = this.maxGradNorm!;
    gpu.stream.dispatch(clipScaleKernel, [partials.buffer, this.#norm.buffer], 1, p);
    partials.dispose();
  }

  /**
   * The per-parameter state in update order (moments and step counts), read back for a
   * checkpoint. One submit and one wait for all of it: call it between steps, never inside one.
   */
  async exportState(): Promise<{ m: Float32Array[]; v: Float32Array[]; steps: number[] }> {
    const m = this.#slots.map((s) => s.m.readLater());
    const v = this.#slots.map((s) => s.v.readLater());
    this.gpu.stream.flush();
    return { m: await Promise.all(m), v: await Promise.all(v), steps: this.#slots.map((s) => s.steps) };
  }

  /** Restore state saved by {@link exportState} (same parameters, same order and sizes). */
  importState(state: { m: ArrayLike<number>[]; v: ArrayLike<number>[]; steps: number[] }): void {
    const n = this.#slots.length;
    if (state.m.length !== n || state.v.length !== n || state.steps.length !== n) {
      throw new Error(
        `AdamW: the saved state has ${state.m.length} parameters, this optimiser ${n} (another model or method?)`,
      );
    }
    this.#slots.forEach((s, i) => {
      if (state.m[i].length !== s.param.size || state.v[i].length !== s.param.size) {
        throw new Error(
          `AdamW: saved moments of parameter ${i} have ${state.m[i].length} values, the parameter ` +
            `${s.param.describe()} has ${s.param.size}`,
        );
      }
      if (!(Number.isSafeInteger(state.steps[i]) && state.steps[i] >= 0)) {
        throw new Error(`AdamW: saved step count ${state.steps[i]} of parameter ${i} is not an integer ≥ 0`);
      }
      this.gpu.stream.write(s.m.buffer, Float32Array.from(state.m[i]));
      this.gpu.stream.write(s.v.buffer, Float32Array.from(state.v[i]));
      s.steps = state.steps[i];
    });
  }

  /** Free every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`). */
  zeroGrad(): void {
    for (const s of this.#slots) {
      s.param.grad?.dispose();
      s.param.grad = null;
    }
  }

  /** Free the optimiser state (moments and buffers); the parameters stay. */
  dispose(): void {
    for (const s of this.#slots) {
      s.m.dispose();
      s.v.dispose();
    }
    this.#hyper.dispose();
    this.#norm.dispose();
  }
}

/** `items` in runs of at most `size`. */
function chunks<T>(items: readonly T[], size: number): T[][] {
  return Array.from(
    { length: Math.ceil(items.length / size) },
    (_, i) => items.slice(i * size, (i + 1) * size),
  );
}
