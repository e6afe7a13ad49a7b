/**
 * Device acquisition: one {@link Gpu} per process, with the adapter's own limits requested
 * (requestDevice otherwise hands out small defaults: 128 MiB bindings, 16 KiB workgroup
 * memory) and `shader-f16` / `timestamp-query` enabled when the adapter offers them.
 * @module
 */
import { PipelineCache } from "./pipelines.ts";
import { BufferPool } from "./pool.ts";
import { Stream } from "./stream.ts";

/** Raised when WebGPU is missing or no adapter can be found; the message says how to fix it. */
export class GpuUnavailableError extends Error {
  /** The error's name, "GpuUnavailableError". */
  override name = "GpuUnavailableError";
}

/** Limits copied from the adapter into the device request (the numeric WebGPU limits). */
const LIMIT_NAMES = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBuffersPerShaderStage",
  "maxBindGroups",
  "maxBindingsPerBindGroup",
] as const;

/** An opened WebGPU device with the runtime services every kernel uses. */
export class Gpu {
  /** True when f16 storage and arithmetic (`enable f16;`) are available. */
  readonly f16: boolean;
  /** True when GPU timestamps can be taken (for benchmarks). */
  readonly timestamps: boolean;
  /**
   * True for a CPU implementation (lavapipe, SwiftShader): a few invocations run at a time, so
   * kernels pick large per-invocation work over parallelism and workgroup memory.
   */
  readonly software: boolean;
  /** Compiled pipelines, keyed by WGSL source and entry point. */
  readonly pipelines: PipelineCache;
  /** Reusable storage buffers. */
  readonly pool: BufferPool;
  /** The one command stream of this device: all work is encoded here and submitted on flush. */
  readonly stream: Stream;
  /** Number of queue submits so far. */
  submits = 0;
  #errors: Error[] = [];
  #lost: Error | null = null;

  /** Wrap `device`, opened on `adapter`; use {@link getGpu} or {@link openGpu} rather than this. */
  constructor(
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
    /** A one-line description of the adapter, for logs and benchmark tables. */
    readonly description: string,
  ) {
    this.f16 = device.features.has("shader-f16");
    this.timestamps = device.features.has("timestamp-query");
    this.software = /llvmpipe|lavapipe|swiftshader|software/i.test(description);
    this.pipelines = new PipelineCache(this);
    this.pool = new BufferPool(device);
    this.stream = new Stream(this);
    device.addEventListener("uncapturederror", (e) => {
      this.#errors.push(new Error(`WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`));
    });
    device.lost.then((info) => this.#onLost(info));
  }

  /**
   * The error of a lost device, null while it works. Readbacks reject with it: after a loss
   * WebGPU itself says only "validation error occurred".
   */
  get lostError(): Error | null {
    return this.#lost;
  }

  /**
   * The lost-device error in place of `e` when the device was lost: a failed map may come
   * before `device.lost` settles, so this waits a turn of the event loop for it.
   */
  async failure(e: unknown): Promise<unknown> {
    if (!this.#lost) await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, 0))]);
    return this.#lost ?? e;
  }

  #onLost(info: GPUDeviceLostInfo): void {
    this.#lost = new Error(`GPU device was lost (${info.reason}): ${info.message}`);
    // a deliberate destroy (at shutdown) is no error until something still uses the device
    if (info.reason !== "destroyed") this.report(this.#lost);
  }

  /** The device's limits (the adapter's, as requested). */
  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** Record an asynchronous error (a failed compile, a validation error) to raise at {@link check}. */
  report(error: Error): void {
    this.#errors.push(error);
  }

  /** Throw the first error recorded since the last check, if any. Awaits pending compiles. */
  async check(): Promise<void> {
    await this.pipelines.settled();
    const error = this.#errors.shift();
    this.#errors.length = 0;
    if (error) throw error;
  }

  /** Submit the stream's work and wait until the GPU has finished it (≈11 ms in Deno: not per step). */
  async sync(): Promise<void> {
    this.stream.flush(true);
    await this.device.queue.onSubmittedWorkDone();
    await this.check();
  }
}

let shared: Promise<Gpu> | undefined;

/**
 * The process-wide {@link Gpu}, opened on first use and again after a device loss.
 * @throws {GpuUnavailableError} when WebGPU or an adapter is missing.
 */
export function getGpu(): Promise<Gpu> {
  if (shared) return shared;
  const opening: Promise<Gpu> = openGpu().then((gpu) => {
    // a lost device is not handed out again: the next call opens a new one
    gpu.device.lost.then(() => {
      if (shared === opening) shared = undefined;
    });
    return gpu;
  }, (e) => {
    if (shared === opening) shared = undefined;
    throw e;
  });
  return shared = opening;
}

/** Open a new device on the best adapter (high-performance preference). */
export async function openGpu(): Promise<Gpu> {
  if (typeof navigator === "undefined" || !("gpu" in navigator)) {
    throw new GpuUnavailableError(
      "WebGPU is not available in this runtime: run hartley with Deno 2 (`deno run -A ...`).",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new GpuUnavailableError(
      "no WebGPU adapter found. On a machine without a GPU install a software Vulkan driver " +
        "(Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`); on a GPU server install the " +
        "Vulkan loader (`libvulkan1`) and the vendor's Vulkan driver (NVIDIA's also needs " +
        "libglvnd: `apt-get install libglvnd0 libglx0`). `VK_LOADER_DEBUG=error` shows why a " +
        "driver was skipped.",
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  const requiredFeatures = (["shader-f16", "timestamp-query"] as GPUFeatureName[])
    .filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const info = adapter.info;
  // bare numbers (PCI vendor and device ids, as some drivers report them) say nothing to a reader
  const description = [info.vendor, info.architecture, info.device, info.description]
    .filter((s) => s && !/^\d*$/.test(String(s))).join(" ") || "unknown adapter";
  return new Gpu(adapter, device, description);
}
