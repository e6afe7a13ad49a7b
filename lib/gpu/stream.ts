/**
 * The command stream: every dispatch, copy, small upload and readback of a step is encoded
 * into one command encoder (one compute pass while only dispatches follow each other) and
 * submitted once by {@link Stream.flush}. Kernel parameters and small uploads go through
 * CPU-side arenas that are written to the GPU with one `writeBuffer` per chunk just before the
 * submit, so they land in encoder order. Bind groups are cached: a training step that
 * repeats the same dispatches with the same buffers creates none after its first run.
 * @module
 */
import { bindingLimit } from "./bands.ts";
import type { Gpu } from "./device.ts";
import type { GroupLayout, Kernel } from "./pipelines.ts";
import { KernelProfiler, type KernelTime } from "./profile.ts";

/** A buffer, or a window of one, bound to a kernel's storage binding. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** Workgroup counts; x alone or x, y, z. */
export type Groups = number | readonly [number, number?, number?];

const ARENA_CHUNK = 1 << 20;
/**
 * Uploads larger than this go straight to `queue.writeBuffer`, which submits the work encoded
 * before them. Batches (token ids, masks) stay below it and so never submit inside a step;
 * weights at load time go above it.
 */
const ARENA_MAX_UPLOAD = 1 << 22;
const ARENA_USAGE = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

let nextBufferId = 1;
const bufferIds = new WeakMap<GPUBuffer, number>();
function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, id = nextBufferId++);
  return id;
}

/** The arena's chunks: CPU bytes mirrored into a GPU buffer at each flush. */
class Arena {
  chunks: { gpu: GPUBuffer; cpu: Uint8Array<ArrayBuffer>; used: number }[] = [];
  #current = 0;

  constructor(private readonly device: GPUDevice) {}

  /** Reserve `bytes` at `align`; returns the chunk and offset to fill. */
  alloc(bytes: number, align: number): { gpu: GPUBuffer; cpu: Uint8Array<ArrayBuffer>; offset: number } {
    for (;;) {
      let chunk = this.chunks[this.#current];
      if (!chunk) {
        const size = Math.max(ARENA_CHUNK, bytes);
        chunk = {
          gpu: this.device.createBuffer({ size, usage: ARENA_USAGE, label: "arena" }),
          cpu: new Uint8Array(size),
          used: 0,
        };
        this.chunks.push(chunk);
      }
      const offset = Math.ceil(chunk.used / align) * align;
      if (offset + bytes <= chunk.cpu.length) {
        chunk.used = offset + bytes;
        return { gpu: chunk.gpu, cpu: chunk.cpu, offset };
      }
      this.#current++;
    }
  }

  /** Forget what was reserved since the last upload. */
  reset(): void {
    for (const c of this.chunks) c.used = 0;
    this.#current = 0;
  }

  /** Write the used part of every chunk to the GPU (queued before the coming submit). */
  upload(queue: GPUQueue): void {
    for (const c of this.chunks) {
      if (c.used > 0) queue.writeBuffer(c.gpu, 0, c.cpu, 0, Math.ceil(c.used / 4) * 4);
      c.used = 0;
    }
    this.#current = 0;
  }
}

/** One device's command stream. Obtain it as `gpu.stream`. */
export class Stream {
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #params: Arena;
  #uploads: Arena;
  /** Bind groups by the pipeline, buffers and ranges they bind, with the ids of those buffers. */
  #bindGroups = new Map<string, { group: GPUBindGroup; ids: number[] }>();
  /** The keys of the cached bind groups that bind each buffer (by id). */
  #keysOf = new Map<number, Set<string>>();
  #groupsCreated = 0;
  #staging: GPUBuffer[] = [];
  #afterSubmit: (() => void)[] = [];
  #dispatches = 0;
  #transfers = 0;
  #passes = 0;
  #discards = 0;
  #census: Map<string, number> | null = null;
  #uniformAlign: number;
  #profiler: KernelProfiler | null = null;

  /** The stream of `gpu` (each {@link Gpu} makes its own). */
  constructor(private readonly gpu: Gpu) {
    this.#params = new Arena(gpu.device);
    this.#uploads = new Arena(gpu.device);
    this.#uniformAlign = gpu.limits.minUniformBufferOffsetAlignment;
    gpu.pool.onDestroy = (buffer) => this.#forget(buffer);
  }

  /** Dispatches encoded since the stream was created (for profiles and tests). */
  get dispatches(): number {
    return this.#dispatches;
  }

  /** Buffer copies and clears encoded since the stream was created: each ends a compute pass. */
  get transfers(): number {
    return this.#transfers;
  }

  /** Compute passes begun since the stream was created (without a profile: one a run of dispatches). */
  get passes(): number {
    return this.#passes;
  }

  /**
   * Times {@link discard} ran: whatever was built on the GPU before one may never have been
   * written (a cache compares it).
   */
  get discards(): number {
    return this.#discards;
  }

  /**
   * Count the following commands by kernel name (copies as "(copy)", clears as "(clear)", and the
   * compute passes begun as "(compute pass)").
   */
  startCensus(): void {
    this.#census = new Map();
  }

  /** End the census: each kernel's dispatches and the copies and clears, most first. */
  stopCensus(): [string, number][] {
    const census = [...(this.#census ?? [])].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    this.#census = null;
    return census;
  }

  #count(name: string): void {
    this.#census?.set(name, (this.#census.get(name) ?? 0) + 1);
  }

  /**
   * Drop what was encoded since the last submit without running it, for a dry run that only
   * counts a step's commands (`bench/step.ts --count`: a RoBERTa-base step takes minutes on
   * lavapipe). Readbacks queued since then never settle.
   */
  discard(): void {
    this.#discards++;
    this.#pass = null;
    this.#encoder = null;
    this.#afterSubmit = [];
    this.#params.reset();
    this.#uploads.reset();
    // nothing that was encoded will use the buffers released meanwhile
    this.gpu.pool.submitted(this.gpu.pool.nextSubmit++);
  }

  /** Bind groups created so far (a repeated step should add none). */
  get bindGroupsCreated(): number {
    return this.#groupsCreated;
  }

  /** Bind groups cached now (those of buffers the pool destroyed are dropped). */
  get bindGroupsCached(): number {
    return this.#bindGroups.size;
  }

  /** Cache `group` under `key`; it binds the buffers `ids`. */
  #cache(key: string, group: GPUBindGroup, ids: number[]): void {
    if (this.#bindGroups.size > 20000) {
      this.#bindGroups.clear();
      this.#keysOf.clear();
    }
    this.#bindGroups.set(key, { group, ids });
    for (const id of ids) {
      const keys = this.#keysOf.get(id) ?? new Set();
      keys.add(key);
      this.#keysOf.set(id, keys);
    }
  }

  /** Drop the cached bind groups of a buffer the pool destroyed (its id is never bound again). */
  #forget(buffer: GPUBuffer): void {
    const id = bufferIds.get(buffer);
    if (id === undefined) return;
    for (const key of this.#keysOf.get(id) ?? []) {
      for (const other of this.#bindGroups.get(key)!.ids) {
        if (other !== id) this.#keysOf.get(other)?.delete(key);
      }
      this.#bindGroups.delete(key);
    }
    this.#keysOf.delete(id);
  }

  #enc(): GPUCommandEncoder {
    return this.#encoder ??= this.gpu.device.createCommandEncoder();
  }

  #endPass(): void {
    this.#pass?.end();
    this.#pass = null;
  }

  /**
   * Encode one dispatch. Storage buffers bind at 0..k-1 in group 0 in the order given; when
   * `params` is given, it binds as a uniform at binding k.
   */
  dispatch(kernel: Kernel, buffers: readonly Binding[], groups: Groups, params?: ArrayBufferView): void {
    const pipeline = this.gpu.pipelines.get(kernel);
    const layout = this.gpu.pipelines.layout(pipeline);
    const [x, y = 1, z = 1] = typeof groups === "number" ? [groups] : groups;
    this.#checkDispatch(kernel, layout, buffers.length + (params ? 1 : 0), x, y, z);
    const entries: GPUBindGroupEntry[] = [];
    const ids: number[] = [];
    let key = `${this.gpu.pipelines.id(pipeline)}`;
    const limit = bindingLimit(this.gpu);
    for (const [i, b] of buffers.entries()) {
      const r = b instanceof GPUBuffer ? { buffer: b } : b;
      const bytes = r.size ?? r.buffer.size - (r.offset ?? 0);
      if (bytes > limit) {
        // a clear error in place of WebGPU's validation error at the end of the step
        const name = this.gpu.pool.labelOf(r.buffer);
        const buffer = name ? `buffer '${name}'` : "an unnamed buffer";
        throw new Error(
          `${kernel.name}: binding ${i} (${buffer}) spans ${bytes} bytes, over this device's largest ` +
            `storage binding (${limit} bytes)`,
        );
      }
      entries.push({ binding: i, resource: r });
      ids.push(bufferId(r.buffer));
      key += `|${ids[i]}:${r.offset ?? 0}:${r.size ?? -1}`;
    }
    // with a dynamic uniform, the bind group holds the arena chunk and each dispatch its offset
    let offsets: number[] | undefined;
    if (params) {
      const size = Math.ceil(params.byteLength / 16) * 16;
      const slot = this.#params.alloc(size, this.#uniformAlign);
      slot.cpu.set(new Uint8Array(params.buffer, params.byteOffset, params.byteLength), slot.offset);
      const at = layout.dynamicUniform ? 0 : slot.offset;
      if (layout.dynamicUniform) offsets = [slot.offset];
      entries.push({ binding: buffers.length, resource: { buffer: slot.gpu, offset: at, size } });
      key += `|u${bufferId(slot.gpu)}:${at}:${size}`;
    }
    let group = this.#bindGroups.get(key)?.group;
    if (!group) {
      group = this.gpu.device.createBindGroup({ layout: layout.group, entries });
      this.#groupsCreated++;
      this.#cache(key, group, ids);
    }
    if (x === 0 || y === 0 || z === 0) return;
    if (this.#profiler) {
      this.#endPass();
      if (this.#profiler.full) this.#profiler.drain();
      this.#pass = this.#enc().beginComputePass({ timestampWrites: this.#profiler.next(kernel.name) });
    }
    if (!this.#pass) {
      this.#pass = this.#enc().beginComputePass();
      this.#passes++;
      this.#count("(compute pass)");
    }
    this.#pass.setPipeline(pipeline);
    if (offsets) this.#pass.setBindGroup(0, group, offsets);
    else this.#pass.setBindGroup(0, group);
    this.#pass.dispatchWorkgroups(x, y, z);
    this.#dispatches++;
    this.#count(kernel.name);
    if (this.#profiler) this.#endPass();
  }

  /**
   * Throw, naming the kernel, for what WebGPU would report at the end of the step without
   * naming it: too many workgroups in a dimension, a binding count the layout does not have.
   */
  #checkDispatch(
    kernel: Kernel,
    layout: GroupLayout,
    bindings: number,
    x: number,
    y: number,
    z: number,
  ): void {
    const most = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    if (x > most || y > most || z > most) {
      throw new Error(
        `${kernel.name}: ${x}×${y}×${z} workgroups, over this device's ${most} workgroups per dimension`,
      );
    }
    if (layout.bindings >= 0 && bindings !== layout.bindings) {
      throw new Error(`${kernel.name}: ${bindings} bindings given, its layout has ${layout.bindings}`);
    }
  }

  /**
   * Time every following dispatch on the GPU clock, by kernel name (see lib/gpu/profile.ts).
   * `capacity` timestamps are taken before their read is queued (two per dispatch).
   */
  startProfile(capacity = 4096): void {
    if (this.#profiler) throw new Error("stream.startProfile: a profile is already running");
    this.#profiler = new KernelProfiler(this.gpu, capacity);
  }

  /** End the profile: submit, wait, and return each kernel's total time, slowest first. */
  async stopProfile(): Promise<KernelTime[]> {
    const profiler = this.#profiler;
    if (!profiler) throw new Error("stream.stopProfile: no profile is running");
    this.#profiler = null;
    profiler.drain();
    this.flush();
    const totals = await profiler.totals();
    profiler.dispose();
    return totals;
  }

  /** Copy `size` bytes between buffers, in stream order. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.#endPass();
    this.#transfers++;
    this.#count("(copy)");
    this.#enc().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /** Zero `size` bytes of `buffer` (all of it by default), in stream order. */
  clear(buffer: GPUBuffer, offset = 0, size?: number): void {
    this.#endPass();
    this.#transfers++;
    this.#count("(clear)");
    this.#enc().clearBuffer(buffer, offset, size);
  }

  /** Write `data` into `buffer` at `offset`, in stream order (safe for buffers in use). */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) throw new Error("stream.write: byte length must be a multiple of 4");
    if (bytes.byteLength === 0) return;
    if (bytes.byteLength > ARENA_MAX_UPLOAD) {
      // writeBuffer lands before the next submit, so submit what is encoded first. It copies
      // once into the runtime's staging memory: a mapped staging buffer of our own was several
      // times slower (`deno run -A bench/runtime.ts`) and made loading a LLaMA-7B layer's
      // 1.9 GB take 89 s on the H100
      this.flush();
      this.gpu.device.queue.writeBuffer(buffer, offset, bytes as Uint8Array<ArrayBuffer>);
      return;
    }
    const slot = this.#uploads.alloc(bytes.byteLength, 4);
    slot.cpu.set(bytes, slot.offset);
    this.copy(slot.gpu, slot.offset, buffer, offset, bytes.byteLength);
  }

  /**
   * Queue a readback of `size` bytes of `buffer`; the promise resolves after a later
   * {@link flush} once the GPU is done. Does not submit by itself, so a training loop can
   * read its loss every K steps without stalling.
   */
  readLater(buffer: GPUBuffer, size = buffer.size, offset = 0): Promise<ArrayBuffer> {
    const bytes = Math.ceil(size / 4) * 4;
    const i = this.#staging.findIndex((b) => b.size >= bytes && b.size <= 4 * bytes + 256);
    const staging = i >= 0 ? this.#staging.splice(i, 1)[0] : this.gpu.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "readback",
    });
    this.copy(buffer, offset, staging, 0, bytes);
    return new Promise((resolve, reject) => {
      this.#afterSubmit.push(async () => {
        try {
          if (this.gpu.lostError) throw this.gpu.lostError;
          await staging.mapAsync(GPUMapMode.READ, 0, bytes);
          const out = staging.getMappedRange(0, bytes).slice(0, size);
          staging.unmap();
          this.#staging.push(staging);
          await this.gpu.check();
          resolve(out);
        } catch (e) {
          reject(await this.gpu.failure(e));
        }
      });
    });
  }

  /** Submit and read `size` bytes of `buffer` (one round trip, ≈11 ms in Deno). */
  read(buffer: GPUBuffer, size = buffer.size, offset = 0): Promise<ArrayBuffer> {
    const p = this.readLater(buffer, size, offset);
    this.flush();
    return p;
  }

  /** Write a GPU timestamp into `querySet[index]` at this point of the stream. */
  timestamp(querySet: GPUQuerySet, index: number): void {
    this.#endPass();
    this.#enc().beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: index } })
      .end();
  }

  /** Resolve `count` timestamps of `querySet` into `dst` (a QUERY_RESOLVE buffer). */
  resolveTimestamps(querySet: GPUQuerySet, count: number, dst: GPUBuffer): void {
    this.#endPass();
    this.#enc().resolveQuerySet(querySet, 0, count, dst, 0);
  }

  /**
   * Submit everything encoded so far (when nothing was, only if `always`). Nothing here waits
   * for the GPU: in Deno, `queue.onSubmittedWorkDone()` blocks the calling thread until the
   * GPU is idle (`deno run -A bench/runtime.ts`), so asking it after every submit made each step
   * wait for its own work and the CPU could not record the next step meanwhile (H100,
   * RoBERTa-base SSH step: 42.6 ms to record plus 65.8 ms in the submit; bench/RESULTS.md).
   */
  flush(always = false): void {
    this.#endPass();
    const callbacks = this.#afterSubmit;
    if (!this.#encoder && callbacks.length === 0 && !always) return;
    const { device, pool } = this.gpu;
    this.#params.upload(device.queue);
    this.#uploads.upload(device.queue);
    device.queue.submit([this.#enc().finish()]);
    this.#encoder = null;
    this.#afterSubmit = [];
    pool.submitted(pool.nextSubmit++);
    this.gpu.submits++;
    for (const cb of callbacks) cb();
  }
}
