/**
 * The keys and values a causal LM has computed for the positions it has seen, kept on the GPU
 * between forward passes: generation then runs each new token through the layers alone, in
 * time proportional to the sequence, instead of running the whole sequence again.
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import { stridedCopy } from "../tensor/ops/copy.ts";
import { keep, prefixAttention, type PrefixAttentionOptions, Tensor } from "../tensor/mod.ts";

/** The sizes of a model's cache. */
export interface KvCacheShape {
  /** Decoder layers. */
  layers: number;
  /** Key/value heads per layer. */
  kvHeads: number;
  /** Size of one head. */
  headDim: number;
  /** The model's positions: the cache never grows past them (Infinity: rotary positions, no limit). */
  maxPositions: number;
  /**
   * The length past which a pass rotates its keys otherwise than shorter ones do (LongRoPE's
   * original_max_position_embeddings; default Infinity: never): generation ends a chunk there.
   */
  rotationSwitch?: number;
  /**
   * Storage of the keys and values: f32 (default) or f16 (half the memory, on a device with
   * shader-f16; each key and value rounded to f16 once, the attention computed in f32).
   */
  dtype?: KvCacheDtype;
}

/**
 * A pass whose keys would be rotated otherwise than the cached ones (LongRoPE's factor sets switch
 * at original_max_position_embeddings): the cache must be filled again (generation does so).
 */
export class CacheRotationError extends Error {
  /** "CacheRotationError". */
  /** Always "CacheRotationError". */
  override name = "CacheRotationError";
}

/** Storage of a {@link KvCache}'s keys and values. */
export type KvCacheDtype = "f32" | "f16";

/** Columns `[at, at + kvHeads·headDim)` of a [B, T, W] tensor: one layer's new keys or values. */
export interface KvColumns {
  /** The tensor [B, T, W]. */
  x: Tensor;
  /** First column; default 0. */
  at?: number;
}

/**
 * One sequence batch's keys and values, layer by layer, stored [B, C, kvHeads, headDim] with
 * room C that doubles as the sequence grows. A forward pass given the cache
 * ({@link ForwardOptions.cache}) takes only the new tokens: it calls {@link begin}, then per
 * layer {@link attend}, then {@link commit}. Not differentiable: for inference.
 */
export class KvCache {
  /** The device holding the cache. */
  readonly gpu: Gpu;
  /** The sizes it was made for. */
  readonly shape: KvCacheShape;
  #keys: Tensor[] = [];
  #values: Tensor[] = [];
  #batch = 0;
  #capacity = 0;
  #length = 0;
  #pending = 0;
  #disposed = false;
  /** 1 for a real key, 0 for padding, [batch × capacity] on the CPU. */
  #keys01 = new Int32Array(0);
  /** Each row's real tokens so far. */
  #real = new Int32Array(0);
  #positions = new Int32Array(0);
  #passMask: Tensor | null = null;

  /**
   * An empty cache for a decoder `config` (heads per layer; grouped-query key/value heads when it
   * has them), stored as `dtype` (f16 falls back to f32 without shader-f16).
   */
  static for(
    gpu: Gpu,
    config: {
      numLayers: number;
      numHeads: number;
      numKvHeads?: number;
      headDim: number;
      maxPositions: number;
      rotationSwitch?: number;
    },
    dtype: KvCacheDtype = "f32",
  ): KvCache {
    const { numLayers: layers, numHeads, numKvHeads, headDim, maxPositions, rotationSwitch } = config;
    return new KvCache(gpu, {
      layers,
      kvHeads: numKvHeads ?? numHeads,
      headDim,
      maxPositions,
      ...(rotationSwitch !== undefined ? { rotationSwitch } : {}),
      dtype: dtype === "f16" && gpu.f16 ? "f16" : "f32",
    });
  }

  /** An empty cache; it allocates when its first forward pass begins. */
  constructor(gpu: Gpu, shape: KvCacheShape) {
    const ok = [shape.layers, shape.kvHeads, shape.headDim].every((n) => Number.isInteger(n) && n > 0) &&
      (Number.isInteger(shape.maxPositions) || shape.maxPositions === Infinity) && shape.maxPositions > 0;
    if (!ok) throw new Error(`KvCache: every size must be a positive integer, got ${JSON.stringify(shape)}`);
    if (shape.dtype === "f16" && !gpu.f16) {
      throw new Error(`KvCache: f16 storage needs a device with shader-f16`);
    }
    this.gpu = gpu;
    this.shape = shape;
  }

  /**
   * What rotated the cached keys, where a model's rotation depends on the sequence's length
   * (LongRoPE's "short" or "long" factors); null while the cache is empty or nothing was recorded.
   */
  rotation: string | null = null;

  /** Positions cached so far. */
  get length(): number {
    return this.#length;
  }

  /**
   * Start a forward pass over `t` new positions of `b` rows, whose `attentionMask` [b·t] (1 real,
   * 0 padding; default all real) joins the cached keys': make room for them and return the first
   * new position.
   */
  begin(b: number, t: number, attentionMask?: Int32Array): number {
    if (this.#disposed) throw new Error("KvCache: used after dispose()");
    if (this.#pending) this.truncate(this.#length); // a pass that failed before commit() is dropped
    if (this.#length > 0 && b !== this.#batch) {
      throw new Error(`KvCache: the cache holds ${this.#batch} rows, the batch has ${b}`);
    }
    if (attentionMask && attentionMask.length !== b * t) {
      throw new Error(`KvCache: attention_mask has ${attentionMask.length} values, expected ${b}×${t}`);
    }
    const need = this.#length + t, max = this.shape.maxPositions;
    if (need > max) {
      throw new Error(
        `KvCache: ${t} new tokens after ${this.#length} cached ones pass the model's ${max} positions`,
      );
    }
    if (b !== this.#batch || need > this.#capacity) {
      this.#grow(b, Math.min(max, Math.max(64, 2 ** Math.ceil(Math.log2(need)))));
    }
    // HF's generation positions: a row's real tokens before each (cumsum − 1), 1 at padding
    const cap = this.#capacity;
    this.#positions = new Int32Array(b * t);
    for (let r = 0; r < b; r++) {
      for (let j = 0; j < t; j++) {
        const real = attentionMask ? attentionMask[r * t + j] !== 0 : true;
        this.#keys01[r * cap + this.#length + j] = real ? 1 : 0;
        this.#positions[r * t + j] = real ? this.#real[r]++ : 1;
      }
    }
    this.#pending = t;
    this.#passMask = this.#keyMask(need);
    return this.#length;
  }

  /** Position ids [b·t] of the pass's new tokens (HF's in generation: 0, 1, … over each row's real tokens). */
  get positions(): Int32Array {
    return this.#positions;
  }

  /**
   * Store layer `layer`'s keys and values of the new positions (each [B, T, ·] with the
   * kvHeads·headDim columns from `at`) and attend from q [B, T, H, headDim] over every cached
   * position, the new ones included. Returns [B, T, H, headDim].
   */
  attend(
    layer: number,
    q: Tensor,
    keys: KvColumns,
    values: KvColumns,
    opts: PrefixAttentionOptions = {},
  ): Tensor {
    if (!this.#pending) throw new Error("KvCache: attend() outside begin() … commit()");
    if (!(Number.isInteger(layer) && layer >= 0 && layer < this.shape.layers)) {
      throw new Error(`KvCache: layer ${layer} is outside 0..${this.shape.layers - 1}`);
    }
    this.#store(keys, this.#keys[layer], "keys");
    this.#store(values, this.#values[layer], "values");
    const length = this.#length + this.#pending;
    return prefixAttention(q, this.#keys[layer], this.#values[layer], length, {
      ...opts,
      mask: this.#passMask,
    });
  }

  /** End the forward pass: its positions become part of the cache. */
  commit(): void {
    this.#length += this.#pending;
    this.#pending = 0;
    this.#passMask = null;
  }

  /**
   * Forget the positions from `length` on (a conversation's next turn keeps the tokens it shares
   * with the last one): the next forward pass writes from there. A pass begun and not committed
   * (an error inside it) is dropped too.
   */
  truncate(length: number): void {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.#length)) {
      throw new RangeError(`KvCache: truncate(${length}) is outside 0..${this.#length}`);
    }
    this.#length = length;
    if (length === 0) this.rotation = null;
    this.#pending = 0; // a pass that failed before commit() is dropped
    this.#passMask = null;
    const cap = this.#capacity;
    for (let r = 0; r < this.#batch; r++) {
      let real = 0;
      for (let j = 0; j < length; j++) real += this.#keys01[r * cap + j];
      this.#real[r] = real;
    }
  }

  /** Release the cache's GPU buffers. */
  dispose(): void {
    for (const t of [...this.#keys, ...this.#values]) t.dispose();
    this.#keys = this.#values = [];
    this.#disposed = true;
  }

  #store(src: KvColumns, dst: Tensor, what: string): void {
    const { kvHeads, headDim } = this.shape, w = kvHeads * headDim, at = src.at ?? 0;
    const [b, t, width] = src.x.shape;
    if (src.x.shape.length !== 3 || b !== this.#batch || t !== this.#pending || at < 0 || at + w > width) {
      throw new Error(
        `KvCache: new ${what} should be ${w} columns from ${at} of [${this.#batch}, ${this.#pending}, W], ` +
          `got ${src.x.describe()}`,
      );
    }
    const cap = this.#capacity;
    stridedCopy(src.x, dst, [b, t, w], [t * width, width, 1], [cap * w, w, 1], at, this.#length * w);
  }

  /** The keys' mask [B, length] on the GPU (0 at padding), or null when every key is real. */
  #keyMask(length: number): Tensor | null {
    const b = this.#batch, cap = this.#capacity, mask = new Int32Array(b * length);
    for (let r = 0; r < b; r++) mask.set(this.#keys01.subarray(r * cap, r * cap + length), r * length);
    return mask.every((m) => m === 1) ? null : Tensor.from(this.gpu, mask, [b, length]);
  }

  /** Room for `capacity` positions of `b` rows, keeping what is cached. */
  #grow(b: number, capacity: number): void {
    const w = this.shape.kvHeads * this.shape.headDim, old = this.#capacity, n = this.#length;
    const keys01 = new Int32Array(b * capacity);
    if (b === this.#batch) {
      for (let r = 0; r < b; r++) keys01.set(this.#keys01.subarray(r * old, r * old + n), r * capacity);
    } else this.#real = new Int32Array(b);
    this.#keys01 = keys01;
    const move = (from: Tensor | undefined) => {
      const shape = [b, capacity, this.shape.kvHeads, this.shape.headDim];
      const to = keep(Tensor.empty(this.gpu, shape, this.shape.dtype ?? "f32"));
      if (from) {
        if (n > 0) stridedCopy(from, to, [b, n, w], [old * w, w, 1], [capacity * w, w, 1]);
        from.dispose();
      }
      return to;
    };
    this.#keys = Array.from({ length: this.shape.layers }, (_, i) => move(this.#keys[i]));
    this.#values = Array.from({ length: this.shape.layers }, (_, i) => move(this.#values[i]));
    this.#batch = b;
    this.#capacity = capacity;
  }
}

/**
 * Start a family's forward pass with `cache` ({@link KvCache.begin}): the batch's new tokens and
 * their attention mask (left-padded prompts of a batch); a classifier's pooled positions are
 * refused.
 */
export function beginCached(
  cache: KvCache,
  family: string,
  task: string,
  attentionMask: Int32Array | undefined,
  b: number,
  t: number,
): number {
  if (task === "seq-cls" || task === "token-cls") {
    throw new Error(`${family}: a key/value cache is for generation, not a classifier`);
  }
  return cache.begin(b, t, attentionMask);
}
