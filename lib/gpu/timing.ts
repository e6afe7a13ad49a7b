/**
 * GPU timestamps for benchmarks: `mark()` between pieces of encoded work, then `read()` the
 * intervals. Falls back to wall-clock time around a full sync where the adapter has no
 * `timestamp-query` (then each interval includes one ≈11 ms round trip: use many reps).
 * @module
 */
import type { Gpu } from "./device.ts";

/** Records timestamps at points of the stream. */
export class GpuTimer {
  #querySet: GPUQuerySet | null;
  #resolve: GPUBuffer | null;
  #count = 0;
  #wall: number[] = [];

  /** A timer on `gpu`'s stream holding up to `capacity` marks between reads. */
  constructor(private readonly gpu: Gpu, readonly capacity = 64) {
    this.#querySet = gpu.timestamps
      ? gpu.device.createQuerySet({ type: "timestamp", count: capacity })
      : null;
    this.#resolve = gpu.timestamps
      ? gpu.device.createBuffer({
        size: capacity * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      })
      : null;
  }

  /** True when intervals come from GPU timestamps rather than the wall clock. */
  get onGpu(): boolean {
    return this.#querySet !== null;
  }

  /** Mark this point of the stream. Wall-clock fallback: syncs first. */
  async mark(): Promise<void> {
    if (this.#count >= this.capacity) throw new Error(`GpuTimer: more than ${this.capacity} marks`);
    if (this.#querySet) {
      this.gpu.stream.timestamp(this.#querySet, this.#count++);
    } else {
      await this.gpu.sync();
      this.#wall.push(performance.now());
      this.#count++;
    }
  }

  /** Milliseconds between consecutive marks; resets the timer. */
  async read(): Promise<number[]> {
    const n = this.#count;
    this.#count = 0;
    if (!this.#querySet) {
      const t = this.#wall.splice(0);
      return t.slice(1).map((v, i) => v - t[i]);
    }
    this.gpu.stream.resolveTimestamps(this.#querySet, n, this.#resolve!);
    const raw = new BigUint64Array(await this.gpu.stream.read(this.#resolve!, n * 8));
    const out: number[] = [];
    for (let i = 1; i < n; i++) out.push(Number(raw[i] - raw[i - 1]) / 1e6);
    return out;
  }
}
