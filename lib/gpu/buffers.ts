/**
 * Moving typed arrays to and from GPU buffers outside a training step (tests, loading,
 * tools). Inside a step use the stream's `write` and `readLater`.
 * @module
 */
import type { Gpu } from "./device.ts";

/** A pooled storage buffer holding `data` (written in stream order). */
export function upload(gpu: Gpu, data: ArrayBufferView, label?: string): GPUBuffer {
  const buffer = gpu.pool.acquire(Math.max(4, data.byteLength), undefined, label);
  if (data.byteLength > 0) gpu.stream.write(buffer, padTo4(data));
  return buffer;
}

/** The bytes of `data`, zero-padded to a multiple of 4 when needed (f16, u8). */
export function padTo4(data: ArrayBufferView): ArrayBufferView {
  if (data.byteLength % 4 === 0) return data;
  const out = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return out;
}

/** Read `count` f32 values from `buffer` (submits and waits). */
export async function readF32(gpu: Gpu, buffer: GPUBuffer, count: number, offset = 0): Promise<Float32Array> {
  return new Float32Array(await gpu.stream.read(buffer, count * 4, offset * 4));
}

/** Read `count` u32 values from `buffer` (submits and waits). */
export async function readU32(gpu: Gpu, buffer: GPUBuffer, count: number, offset = 0): Promise<Uint32Array> {
  return new Uint32Array(await gpu.stream.read(buffer, count * 4, offset * 4));
}

/** Read `count` i32 values from `buffer` (submits and waits). */
export async function readI32(gpu: Gpu, buffer: GPUBuffer, count: number, offset = 0): Promise<Int32Array> {
  return new Int32Array(await gpu.stream.read(buffer, count * 4, offset * 4));
}

/**
 * Workgroup counts for `groups` workgroups: [x, y] with x ≤ the device's per-dimension
 * limit. Kernels recover the linear index as `wid.x + wid.y * nx` with `nx = num_workgroups.x`.
 */
export function grid(gpu: Gpu, groups: number): [number, number] {
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [groups, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}
