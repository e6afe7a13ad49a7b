/**
 * The Tensor: a shape, a dtype and pooled GPU storage, plus what autograd needs (a gradient,
 * the node that produced it). Tensors are always contiguous row-major. Storage is reference
 * counted so that views (reshape), and activations saved for backward, outlive the handle
 * that created them; it returns to the pool when the last reference goes.
 * @module
 */
import { fillKernel } from "../../kernels/elementwise.ts";
import { groupWords } from "../../kernels/quant.ts";
import { padTo4 } from "../gpu/buffers.ts";
import type { Gpu } from "../gpu/mod.ts";
import { type GradNode, releaseGraph, runBackward } from "./autograd.ts";
import { quantize } from "./ops/quant.ts";
import { f, launchUnits, u32s } from "./ops/util.ts";
import { track } from "./scope.ts";
import { decodeValues, QUANT_GROUP, type QuantKind, unpackCodes } from "./quant_format.ts";
import { checkShape, fmt, numel, type Shape } from "./shape.ts";

/**
 * Element types: f32 (everything trainable), f16 (frozen weight storage), i32 (ids, labels),
 * q8 and q4 (frozen weights quantized in groups of 32 with an f32 scale each; the format is in
 * lib/tensor/quant_format.ts).
 */
export type DType = "f32" | "f16" | "i32" | QuantKind;

/** Whether a dtype is quantized storage (codes plus group scales). */
export function isQuantized(dtype: DType): dtype is QuantKind {
  return dtype === "q8" || dtype === "q4";
}

const BYTES: Record<"f32" | "f16" | "i32", number> = { f32: 4, f16: 2, i32: 4 };

/** Bytes of the main buffer of `n` elements of `dtype` (whole words; whole groups when quantized). */
function dataBytes(dtype: DType, n: number): number {
  if (isQuantized(dtype)) return Math.ceil(n / QUANT_GROUP) * groupWords(dtype) * 4;
  return Math.ceil((n * BYTES[dtype]) / 4) * 4;
}

/** Bytes of a quantized tensor's scales, one f32 per group (0 for other dtypes). */
function scaleBytes(dtype: DType, n: number): number {
  return isQuantized(dtype) ? Math.ceil(n / QUANT_GROUP) * 4 : 0;
}

/** A pooled buffer shared by the tensors that view it (and a quantized tensor's scales). */
class Storage {
  refs = 1;
  /** Rewrites in place (see {@link Tensor.touch}). */
  version = 0;
  constructor(readonly gpu: Gpu, public buffer: GPUBuffer, readonly scales: GPUBuffer | null = null) {}
  release(): void {
    if (--this.refs > 0) return;
    this.gpu.pool.release(this.buffer);
    if (this.scales) this.gpu.pool.release(this.scales);
  }
}

/** Options of {@link Tensor.from} and {@link Tensor.zeros}. */
export interface TensorOptions {
  /**
   * Element type; default f32 (i32 for an Int32Array). f16 falls back to f32 without
   * `gpu.f16`; q8 and q4 quantize the values on the GPU.
   */
  dtype?: DType;
  /** Mark the new (leaf) tensor as a parameter whose gradient backward() computes. */
  requiresGrad?: boolean;
  /** Buffer label for WebGPU error messages. */
  label?: string;
}

/** A GPU tensor. Create with {@link Tensor.from} / {@link Tensor.zeros}; ops live in `mod.ts`. */
export class Tensor {
  /** Dimensions, outermost first. */
  readonly shape: Shape;
  /** Number of elements. */
  readonly size: number;
  /** The gradient accumulated by backward() (leaves only); an optimiser's `zeroGrad()` frees it. */
  grad: Tensor | null = null;
  /** The autograd node that produced this tensor; null for leaves. @internal */
  node: GradNode | null = null;
  /** Number of live autograd nodes that take this tensor as an input. @internal */
  consumers = 0;
  /** Excluded from {@link tensor.tidy} cleanup. */
  kept = false;
  /** The CPU copy of an i32 tensor made from host data (embedding and loss use it). */
  host: Int32Array | undefined;
  #storage: Storage | null;
  #requiresGrad = false;

  private constructor(readonly gpu: Gpu, storage: Storage, shape: Shape, readonly dtype: DType) {
    this.#storage = storage;
    this.shape = [...shape];
    this.size = numel(shape);
    track(this);
  }

  /** An uninitialised tensor (contents undefined until an op writes it). */
  static empty(gpu: Gpu, shape: Shape, dtype: DType = "f32", label?: string): Tensor {
    checkShape(shape, "Tensor.empty");
    const n = numel(shape);
    // an intermediate (no label) is named by dtype and shape, a string built only when shown
    const unnamed = () => `${dtype}${fmt(shape)}`;
    const buffer = gpu.pool.acquire(Math.max(4, dataBytes(dtype, n)), undefined, label ?? unnamed);
    const scales = isQuantized(dtype)
      ? gpu.pool.acquire(
        Math.max(4, scaleBytes(dtype, n)),
        undefined,
        label === undefined ? () => `${unnamed()}.scales` : `${label}.scales`,
      )
      : null;
    return new Tensor(gpu, new Storage(gpu, buffer, scales), shape, dtype);
  }

  /**
   * A tensor holding `data` (row-major, `numel(shape)` values), written in stream order.
   * f16 is used only when the device has `shader-f16`; otherwise the tensor is f32.
   */
  static from(gpu: Gpu, data: ArrayLike<number>, shape: Shape, opts: TensorOptions = {}): Tensor {
    checkShape(shape, "Tensor.from");
    const n = numel(shape);
    if (data.length !== n) {
      throw new Error(`Tensor.from: ${data.length} values given for shape ${fmt(shape)} (${n} expected)`);
    }
    let dtype: DType = opts.dtype ?? (data instanceof Int32Array ? "i32" : "f32");
    if (dtype === "f16" && !gpu.f16) dtype = "f32";
    if (isQuantized(dtype)) {
      const values = Tensor.from(gpu, data, shape, { label: opts.label });
      const q = quantize(values, dtype, opts.label);
      values.dispose();
      if (opts.requiresGrad) q.requiresGrad = true;
      return q;
    }
    const t = Tensor.empty(gpu, shape, dtype, opts.label);
    const typed = dtype === "i32"
      ? Int32Array.from(data)
      : dtype === "f16"
      ? Float16Array.from(data)
      : data instanceof Float32Array
      ? data
      : Float32Array.from(data);
    if (dtype === "i32") t.host = typed as Int32Array;
    if (n > 0) gpu.stream.write(t.buffer, padTo4(typed));
    if (opts.requiresGrad) t.requiresGrad = true;
    return t;
  }

  /** A tensor of zeros. */
  static zeros(gpu: Gpu, shape: Shape, opts: TensorOptions = {}): Tensor {
    const t = Tensor.empty(gpu, shape, opts.dtype ?? "f32", opts.label);
    gpu.stream.clear(t.buffer, 0, dataBytes(t.dtype, t.size));
    if (isQuantized(t.dtype)) gpu.stream.clear(t.scales, 0, scaleBytes(t.dtype, t.size));
    if (opts.requiresGrad) t.requiresGrad = true;
    return t;
  }

  /** An f32 tensor with every element `value`. */
  static full(gpu: Gpu, shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
    const t = Tensor.empty(gpu, shape, "f32", opts.label);
    // a tensor over one storage binding fills in bands
    launchUnits(gpu, fillKernel, [[t.buffer, 4]], t.size, (_, n) => u32s(n, f(value)));
    if (opts.requiresGrad) t.requiresGrad = true;
    return t;
  }

  /** The GPU buffer (pooled, possibly larger than the data). Throws once disposed. */
  get buffer(): GPUBuffer {
    if (!this.#storage) throw new Error(`tensor ${this.describe()} was used after dispose()`);
    return this.#storage.buffer;
  }

  /** Bytes of the values (a quantized tensor's codes and scales), not counting the pool's rounding. */
  get bytes(): number {
    return dataBytes(this.dtype, this.size) + scaleBytes(this.dtype, this.size);
  }

  /** A quantized tensor's group scales (f32, one per {@link tensor.QUANT_GROUP} elements). */
  get scales(): GPUBuffer {
    const scales = this.#storage?.scales;
    if (!scales) {
      throw new Error(
        `tensor ${this.describe()} ${this.disposed ? "was used after dispose()" : "has no scales"}`,
      );
    }
    return scales;
  }

  /**
   * How often the values were rewritten in place ({@link touch}); a cache built from a frozen
   * tensor (the stacked q/k/v weight of `fusedProjection`) compares it to know it is current.
   */
  get version(): number {
    return this.#storage?.version ?? -1;
  }

  /**
   * Mark the values as rewritten in place, for every tensor that shares this storage. The copies
   * (`copyAll`, `stridedCopy`), merging ΔW, loading saved values and the optimiser's updates do
   * it; a write straight into {@link buffer} (`gpu.stream.write`, a kernel of one's own) to a
   * tensor already used must call it.
   */
  touch(): void {
    if (this.#storage) this.#storage.version++;
  }

  /** True once dispose() ran. */
  get disposed(): boolean {
    return this.#storage === null;
  }

  /** True when no other tensor handle or saved activation shares this storage. */
  get exclusive(): boolean {
    return this.#storage?.refs === 1;
  }

  /** True for tensors not produced by a recorded op (parameters, inputs). */
  get isLeaf(): boolean {
    return this.node === null;
  }

  /** Whether gradients flow to (leaf) or through (op result) this tensor. */
  get requiresGrad(): boolean {
    return this.#requiresGrad;
  }

  /** Mark a leaf as trainable (f32 only). */
  set requiresGrad(v: boolean) {
    if (v && this.dtype !== "f32") {
      throw new Error(
        `tensor ${this.describe()}: only f32 tensors can require gradients (f16, i32, q8 and q4 are frozen)`,
      );
    }
    if (!this.isLeaf && !v) {
      throw new Error(`tensor ${this.describe()}: requiresGrad of an op result is fixed`);
    }
    this.#requiresGrad = v;
  }

  /** `f32 [2, 3]`, for messages. */
  describe(): string {
    return `${this.dtype} ${fmt(this.shape)}`;
  }

  /** A new handle on the same storage with another shape of the same size (no gradient link). */
  view(shape: Shape): Tensor {
    checkShape(shape, "view");
    if (numel(shape) !== this.size) {
      throw new Error(`view: cannot view ${this.describe()} as ${fmt(shape)} (${numel(shape)} elements)`);
    }
    const s = this.#storage;
    if (!s) throw new Error(`tensor ${this.describe()} was used after dispose()`);
    s.refs++;
    const t = new Tensor(this.gpu, s, shape, this.dtype);
    t.host = this.host; // the same values: ids stay checkable by embedding and loss
    return t;
  }

  /** The same values without a gradient link (shares storage). */
  detach(): Tensor {
    return this.view(this.shape);
  }

  /** Give the storage back (once no view or saved activation shares it) and the gradient. */
  dispose(): void {
    const s = this.#storage;
    if (!s) return;
    this.#storage = null;
    s.release();
    this.grad?.dispose();
    this.grad = null;
    releaseGraph(this);
  }

  /**
   * Encode the backward pass from this tensor: gradients accumulate into the `.grad` of every
   * leaf that requires them. `grad` defaults to 1 for a single-element tensor. The graph's
   * saved activations are released afterwards unless `retainGraph`.
   */
  backward(grad?: Tensor, opts: { retainGraph?: boolean } = {}): void {
    runBackward(this, grad, opts.retainGraph ?? false);
  }

  /** The values (f32, f16 and quantized as Float32Array, i32 converted). Submits and waits. */
  async toArray(): Promise<Float32Array> {
    const p = this.readLater();
    this.gpu.stream.flush();
    return await p;
  }

  /** An i32 tensor's values. Submits and waits. */
  async toInt32Array(): Promise<Int32Array> {
    if (this.dtype !== "i32") throw new Error(`toInt32Array: tensor is ${this.describe()}, not i32`);
    return new Int32Array(await this.gpu.stream.read(this.buffer, this.size * 4));
  }

  /** The single value of a one-element tensor. Submits and waits. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item: tensor ${this.describe()} has ${this.size} elements, not 1`);
    return (await this.toArray())[0];
  }

  /**
   * Queue a readback without submitting: resolves after a later flush completes (read a
   * training loss every K steps this way). The tensor may be disposed right after the call.
   */
  async readLater(): Promise<Float32Array> {
    const dtype = this.dtype;
    const raw = this.gpu.stream.readLater(this.buffer, Math.max(4, dataBytes(dtype, this.size)));
    if (isQuantized(dtype)) {
      const size = this.size;
      const scales = this.gpu.stream.readLater(this.scales, Math.max(4, scaleBytes(dtype, size)));
      const codes = unpackCodes(new Uint32Array(await raw), size, dtype);
      return Float32Array.from(decodeValues(codes, new Float32Array(await scales)));
    }
    const data = await raw;
    if (this.dtype === "f16") return Float32Array.from(new Float16Array(data, 0, this.size));
    if (this.dtype === "i32") return Float32Array.from(new Int32Array(data, 0, this.size));
    return new Float32Array(data, 0, this.size);
  }
}
