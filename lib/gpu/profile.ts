/**
 * Per-kernel GPU time. While a {@link KernelProfiler} is attached to the stream, every dispatch
 * gets a compute pass of its own with a timestamp at its start and end, so the time of each
 * kernel is read off the GPU clock. Separate passes add a little launch cost between kernels
 * (not inside the intervals); use it to see where a step's time goes, not for the step's total.
 *
 *     const prof = gpu.stream.startProfile();
 *     step();
 *     const kernels = await gpu.stream.stopProfile();   // sorted, slowest family first
 * @module
 */
import type { Gpu } from "./device.ts";

/** The GPU time of one kernel name over a profile. */
export interface KernelTime {
  /** The kernel's name (`Kernel.name`). */
  name: string;
  /** Dispatches of this kernel. */
  count: number;
  /** Total milliseconds. */
  ms: number;
}

/** Collects begin/end timestamps of dispatches; see the module doc. */
export class KernelProfiler {
  readonly #querySet: GPUQuerySet;
  readonly #resolve: GPUBuffer;
  #names: string[] = [];
  #reads: Promise<void>[] = [];
  #totals = new Map<string, KernelTime>();

  /** A profiler on `gpu` (which needs timestamp-query) with `capacity` timestamps, two per dispatch. */
  constructor(private readonly gpu: Gpu, readonly capacity = 4096) {
    if (!gpu.timestamps) throw new Error(`KernelProfiler: ${gpu.description} has no timestamp-query`);
    this.#querySet = gpu.device.createQuerySet({ type: "timestamp", count: capacity });
    this.#resolve = gpu.device.createBuffer({
      size: capacity * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
  }

  /** True when the query set has no room for another dispatch: call {@link drain} first. */
  get full(): boolean {
    return 2 * (this.#names.length + 1) > this.capacity;
  }

  /** The timestamp writes of the next dispatch's pass, recorded under `name`. */
  next(name: string): GPUComputePassTimestampWrites {
    const i = 2 * this.#names.length;
    this.#names.push(name);
    return { querySet: this.#querySet, beginningOfPassWriteIndex: i, endOfPassWriteIndex: i + 1 };
  }

  /** Queue the read of the timestamps taken so far (in stream order) and start afresh. */
  drain(): void {
    const names = this.#names;
    if (names.length === 0) return;
    this.#names = [];
    const stream = this.gpu.stream;
    stream.resolveTimestamps(this.#querySet, 2 * names.length, this.#resolve);
    const read = stream.readLater(this.#resolve, 16 * names.length);
    this.#reads.push(read.then((bytes) => {
      const t = new BigUint64Array(bytes);
      names.forEach((name, k) => {
        const entry = this.#totals.get(name) ?? { name, count: 0, ms: 0 };
        entry.count++;
        entry.ms += Number(t[2 * k + 1] - t[2 * k]) / 1e6;
        this.#totals.set(name, entry);
      });
    }));
  }

  /** Every kernel's total, slowest first (after the reads queued by {@link drain} arrive). */
  async totals(): Promise<KernelTime[]> {
    await Promise.all(this.#reads.splice(0));
    return [...this.#totals.values()].sort((a, b) => b.ms - a.ms);
  }

  /** Destroy the query set and the resolve buffer. */
  dispose(): void {
    this.#querySet.destroy();
    this.#resolve.destroy();
  }
}
