/**
 * The WebGPU runtime: device, pipeline cache, buffer pool, command stream, timers.
 * @module
 */
export { getGpu, Gpu, GpuUnavailableError, openGpu } from "./device.ts";
export { type GroupLayout, type Kernel, KernelCompileError, PipelineCache } from "./pipelines.ts";
export { BufferPool, type Label, type PoolStats, sizeClass, STORAGE_USAGE } from "./pool.ts";
export { type Binding, type Groups, Stream } from "./stream.ts";
export { GpuTimer } from "./timing.ts";
export { KernelProfiler, type KernelTime } from "./profile.ts";
export { grid, readF32, readI32, readU32, upload } from "./buffers.ts";
