/**
 * A pool of storage buffers with stream-ordered reuse: a released buffer is handed out again
 * at once, to work encoded after the release. That is safe because every write to a pooled
 * buffer goes through the one command stream (dispatches, `stream.write` copies), and WebGPU
 * runs the commands of a queue in order, so the new owner's writes land after the old owner's
 * reads. (Reusing only after the submit completed made a step's memory the sum of all its
 * temporaries, times the steps the CPU ran ahead: 80 GB for a RoBERTa-base step.) Destroying
 * a buffer ({@link BufferPool.trim}) waits only until its last use is submitted: WebGPU keeps a
 * destroyed buffer alive for work already submitted. Never write a pooled buffer with
 * `queue.writeBuffer` directly: it would jump the work encoded but not yet submitted (`stream.write`
 * submits that first).
 * @module
 */
import { bindableBytes } from "./bands.ts";

/** The usage every pooled buffer has: storage, and both ends of a copy. */
export const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/** Byte counts of the pool, for memory tests and benchmark tables. */
export interface PoolStats {
  /** Bytes of all live buffers the pool created. */
  allocated: number;
  /** Bytes handed out and not yet released. */
  inUse: number;
  /** Bytes free for reuse whose last use is not submitted yet (not destroyable). */
  pending: number;
  /** Bytes free for reuse (pending included). */
  free: number;
  /** The largest `allocated` seen. */
  peak: number;
  /** Buffers the pool created so far (a repeated step should add none). */
  created: number;
}

/**
 * Round a request up to the pool's size classes: powers of two up to 64 KiB, then sixteenths of
 * the next power of two (a waste under 1/16 of that power: under 12.5% of the request), never
 * below 16 bytes. A request of at most `bindable` bytes never rounds up past it: kernels bind
 * whole buffers, and a 1.9 GiB tensor in a 2 GiB buffer could not be bound on a device whose
 * bindings stop at 2³¹ − 4 bytes. Nor does one of at most `most` bytes (the device's largest
 * buffer) round up past that.
 */
export function sizeClass(bytes: number, bindable = Infinity, most = Infinity): number {
  const b = Math.max(16, Math.ceil(bytes / 4) * 4);
  const p = 2 ** Math.ceil(Math.log2(b));
  const size = p <= 65536 ? p : Math.ceil(b / (p / 16)) * (p / 16);
  return (size > bindable && b <= bindable) || (size > most && b <= most) ? b : size;
}

/**
 * The rounds whose highest peak in use is {@link BufferPool.releaseIdle}'s budget. One round was
 * too few: with `--group-by-length`, a short batch's small peak destroyed the buffers of the long
 * batches before it, made again at the next long one (17–28 buffers a step). The pool had to
 * reach that peak anyway; after this many rounds without it, the memory goes back.
 */
const PEAK_ROUNDS = 8;

/** A buffer's label, or a function that builds it (only called when the label is shown). */
export type Label = string | (() => string);

/** A pool of buffers keyed by (usage, size class). */
export class BufferPool {
  #free = new Map<string, GPUBuffer[]>();
  /** Free buffers whose last use may not be submitted yet: buffer → serial of that submit. */
  #unsubmitted = new Map<GPUBuffer, number>();
  /** Every live buffer the pool created → its creation serial. */
  #owned = new Map<GPUBuffer, number>();
  #created = 0;
  #inUse = new Set<GPUBuffer>();
  /** The label of each pooled buffer's current owner (a GPUBuffer keeps its first label). */
  #labels = new WeakMap<GPUBuffer, Label>();
  /** The {@link BufferPool.releaseIdle} round of each free buffer's release. */
  #round = 0;
  #lastUse = new WeakMap<GPUBuffer, number>();
  /** Bytes in use now, and the most in use since the last {@link BufferPool.releaseIdle}. */
  #inUseBytes = 0;
  #roundPeak = 0;
  /** The peaks in use of the last `PEAK_ROUNDS` rounds. */
  #peaks: number[] = [];
  #allocated = 0;
  #peak = 0;
  #freeBytes = 0;
  /** Serial of the submit that buffers released now will be part of. */
  nextSubmit = 0;
  /** Called with each buffer the pool destroys (the stream drops its bind groups for it). */
  onDestroy: (buffer: GPUBuffer) => void = () => {};

  /** An empty pool allocating from `device` (each Gpu makes its own, `gpu.pool`). */
  constructor(private readonly device: GPUDevice) {}

  /** A buffer of at least `bytes` bytes (contents undefined). */
  acquire(bytes: number, usage: number = STORAGE_USAGE, label?: Label): GPUBuffer {
    const { maxStorageBufferBindingSize, maxBufferSize } = this.device.limits;
    const size = sizeClass(bytes, bindableBytes(maxStorageBufferBindingSize), maxBufferSize);
    const key = `${usage}:${size}`;
    const buffer = this.#free.get(key)?.pop();
    if (buffer) {
      this.#labels.set(buffer, label ?? "");
      this.#freeBytes -= size;
      this.#unsubmitted.delete(buffer);
      this.#inUse.add(buffer);
      this.#using(size);
      return buffer;
    }
    if (size > maxBufferSize) {
      const name = nameOf(label);
      throw new Error(
        `buffer${name ? ` '${name}'` : ""} of ${bytes} bytes is over this device's largest buffer ` +
          `(${maxBufferSize} bytes)`,
      );
    }
    // a label built on demand is left to the pool: building it for WebGPU would cost every acquire
    const created = this.device.createBuffer({
      size,
      usage,
      label: typeof label === "string" ? label : undefined,
    });
    this.#labels.set(created, label ?? "");
    this.#owned.set(created, this.#created++);
    this.#inUse.add(created);
    this.#using(size);
    this.#allocated += size;
    this.#peak = Math.max(this.#peak, this.#allocated);
    return created;
  }

  /** The name errors give `buffer`: its current owner's label, not that of the tensor it was made for. */
  labelOf(buffer: GPUBuffer): string {
    const label = this.#labels.get(buffer);
    return label === undefined ? buffer.label : nameOf(label);
  }

  /**
   * Give a buffer back; work encoded from now on may reuse it (see the module doc). A free list
   * hands out its oldest buffer first, so that a step that repeats the same acquires and
   * releases gets the same buffers each time, and the stream's bind groups for them are reused
   * (handing out the last one released permuted them from step to step, and a RoBERTa step
   * created a new bind group for most of its dispatches).
   */
  release(buffer: GPUBuffer): void {
    if (!this.#inUse.delete(buffer)) {
      throw new Error(`buffer '${this.labelOf(buffer)}' released twice or not from this pool`);
    }
    const key = `${buffer.usage}:${buffer.size}`;
    const free = this.#free.get(key) ?? [];
    // kept newest first: pop() takes the oldest
    const serial = this.#owned.get(buffer)!;
    let lo = 0, hi = free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#owned.get(free[mid])! > serial) lo = mid + 1;
      else hi = mid;
    }
    free.splice(lo, 0, buffer);
    this.#free.set(key, free);
    this.#freeBytes += buffer.size;
    this.#unsubmitted.set(buffer, this.nextSubmit);
    this.#lastUse.set(buffer, this.#round);
    this.#inUseBytes -= buffer.size;
  }

  #using(size: number): void {
    this.#inUseBytes += size;
    this.#roundPeak = Math.max(this.#roundPeak, this.#inUseBytes);
  }

  /** Called by the stream once submit `serial` (and every earlier one) is submitted. */
  submitted(serial: number): void {
    for (const [b, s] of this.#unsubmitted) if (s <= serial) this.#unsubmitted.delete(b);
  }

  /** Destroy every free buffer whose work is submitted (e.g. after a phase whose shapes will not recur). */
  trim(): void {
    this.#destroyFree(() => true);
  }

  /**
   * Called once a training step: while the pool holds more than the most any of the last
   * `PEAK_ROUNDS` steps had in use, destroy free buffers (whose work is submitted) that this
   * step did not release, the longest idle first. A step that repeats the last one's shapes keeps
   * all its buffers; batch shapes that vary (`--group-by-length`) do not pile up every size class
   * they ever needed, and a step's shapes are only made again when the budget was spent on others.
   */
  releaseIdle(): void {
    const round = this.#round++;
    this.#peaks.push(this.#roundPeak);
    if (this.#peaks.length > PEAK_ROUNDS) this.#peaks.shift();
    const budget = Math.max(...this.#peaks);
    this.#roundPeak = this.#inUseBytes;
    if (this.#allocated <= budget) return;
    const idle = [...this.#free.values()].flat()
      .filter((b) => !this.#unsubmitted.has(b) && this.#lastUse.get(b)! < round)
      .sort((a, b) => this.#lastUse.get(a)! - this.#lastUse.get(b)!);
    const drop = new Set<GPUBuffer>();
    for (let over = this.#allocated - budget, i = 0; over > 0 && i < idle.length; i++) {
      drop.add(idle[i]);
      over -= idle[i].size;
    }
    this.#destroyFree((b) => drop.has(b));
  }

  /** Destroy the free buffers that `drop` accepts and whose last use is submitted. */
  #destroyFree(drop: (buffer: GPUBuffer) => boolean): void {
    for (const [key, list] of this.#free) {
      const keep: GPUBuffer[] = [];
      for (const b of list) {
        if (this.#unsubmitted.has(b) || !drop(b)) {
          keep.push(b);
          continue;
        }
        this.#owned.delete(b);
        this.#allocated -= b.size;
        this.#freeBytes -= b.size;
        b.destroy();
        this.onDestroy(b);
      }
      if (keep.length > 0) this.#free.set(key, keep);
      else this.#free.delete(key);
    }
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
      pending: [...this.#unsubmitted.keys()].reduce((n, b) => n + b.size, 0),
      free: this.#freeBytes,
      peak: this.#peak,
      created: this.#created,
    };
  }
}

/** The text of a label ("" for none). */
function nameOf(label: Label | undefined): string {
  return typeof label === "function" ? label() : label ?? "";
}
