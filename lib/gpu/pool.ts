/**
 * A pool of storage buffers. A released buffer becomes reusable only once the queue submit
 * that may still use it has completed on the GPU, so a later upload can never overwrite data
 * that queued work has yet to read.
 * @module
 */

/** The usage every pooled buffer has: storage, and both ends of a copy. */
export const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/** Byte counts of the pool, for memory tests and benchmark tables. */
export interface PoolStats {
  /** Bytes of all live buffers the pool created. */
  allocated: number;
  /** Bytes handed out and not yet released. */
  inUse: number;
  /** Bytes released but waiting for their submit to complete. */
  pending: number;
  /** Bytes ready for reuse. */
  free: number;
  /** The largest `allocated` seen. */
  peak: number;
}

/**
 * Round a request up to the pool's size classes: powers of two up to 64 KiB, then eighths of
 * the next power of two (at most 12.5% waste), never below 16 bytes.
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 4) * 4);
  const p = 2 ** Math.ceil(Math.log2(b));
  if (p <= 65536) return p;
  const step = p / 16;
  return Math.ceil(b / step) * step;
}

/** A pool of buffers keyed by (usage, size class). */
export class BufferPool {
  #free = new Map<string, GPUBuffer[]>();
  #pending = new Map<number, GPUBuffer[]>();
  #owned = new Set<GPUBuffer>();
  #inUse = new Set<GPUBuffer>();
  #allocated = 0;
  #peak = 0;
  #pendingBytes = 0;
  #freeBytes = 0;
  /** Serial of the submit that buffers released now will be part of. */
  nextSubmit = 0;

  constructor(private readonly device: GPUDevice) {}

  /** A buffer of at least `bytes` bytes (contents undefined). */
  acquire(bytes: number, usage: number = STORAGE_USAGE, label?: string): GPUBuffer {
    const size = sizeClass(bytes);
    const key = `${usage}:${size}`;
    const buffer = this.#free.get(key)?.pop();
    if (buffer) {
      this.#freeBytes -= size;
      this.#inUse.add(buffer);
      return buffer;
    }
    const created = this.device.createBuffer({ size, usage, label });
    this.#owned.add(created);
    this.#inUse.add(created);
    this.#allocated += size;
    this.#peak = Math.max(this.#peak, this.#allocated);
    return created;
  }

  /** Give a buffer back; it is reused after the next submit completes. */
  release(buffer: GPUBuffer): void {
    if (!this.#inUse.delete(buffer)) {
      throw new Error(`buffer '${buffer.label}' released twice or not from this pool`);
    }
    const list = this.#pending.get(this.nextSubmit) ?? [];
    list.push(buffer);
    this.#pending.set(this.nextSubmit, list);
    this.#pendingBytes += buffer.size;
  }

  /** Called by the stream when submit `serial` (and every earlier one) has completed. */
  completed(serial: number): void {
    for (const [s, list] of this.#pending) {
      if (s > serial) continue;
      for (const b of list) {
        const key = `${b.usage}:${b.size}`;
        const free = this.#free.get(key) ?? [];
        free.push(b);
        this.#free.set(key, free);
        this.#pendingBytes -= b.size;
        this.#freeBytes += b.size;
      }
      this.#pending.delete(s);
    }
  }

  /** Destroy every free buffer (e.g. after a phase whose shapes will not recur). */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        this.#owned.delete(b);
        this.#allocated -= b.size;
        b.destroy();
      }
    }
    this.#free.clear();
    this.#freeBytes = 0;
  }

  /** Start a new peak measurement from what is allocated now. */
  resetPeak(): void {
    this.#peak = this.#allocated;
  }

  /** Current byte counts. */
  stats(): PoolStats {
    let inUse = 0;
    for (const b of this.#inUse) inUse += b.size;
    return {
      allocated: this.#allocated,
      inUse,
      pending: this.#pendingBytes,
      free: this.#freeBytes,
      peak: this.#peak,
    };
  }
}
