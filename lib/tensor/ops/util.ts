/**
 * Small helpers shared by the op families: dispatching one-invocation-per-element kernels,
 * packing uniforms, and argument checks with messages that name the op.
 * @module
 */
import { f32bits } from "../../../kernels/indexing.ts";
import { type Binding, type Gpu, grid, type Kernel } from "../../gpu/mod.ts";
import { unitBands, unitBinding } from "../../gpu/bands.ts";
import type { DType, Tensor } from "../tensor.ts";

/** Dispatch `kernel` with enough workgroups of `wg` invocations for `threads` invocations. */
export function launch(
  gpu: Gpu,
  kernel: Kernel,
  buffers: readonly Binding[],
  threads: number,
  params: ArrayBufferView,
  wg = 256,
): void {
  if (threads === 0) return;
  gpu.stream.dispatch(kernel, buffers, grid(gpu, Math.ceil(threads / wg)), params);
}

/** A uniform of u32 fields; pass floats through {@link f}. */
export function u32s(...values: number[]): Uint32Array {
  return Uint32Array.from(values);
}

/** An f32 uniform field (its bits as a u32) for {@link u32s}. */
export const f: (x: number) => number = f32bits;

/** Throws unless every tensor has dtype `dtype` and lives on the first one's device. */
export function expectDtype(op: string, dtype: DType, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.dtype !== dtype) throw new Error(`${op}: expected ${dtype} tensors, got ${t.describe()}`);
    if (t.gpu !== ts[0].gpu) throw new Error(`${op}: tensors live on different devices`);
  }
}

/**
 * {@link launch} over `units` units that the kernel indexes alike in the bindings given as
 * [buffer, bytes a unit] (the others bind whole): when one of those is over one storage binding
 * (a large vocabulary's embedding table as it is quantized, or its gradients as they are summed),
 * one dispatch a band of units, each binding windows of them, with the uniform
 * `params(first, count)`.
 */
export function launchUnits(
  gpu: Gpu,
  kernel: Kernel,
  bindings: readonly (GPUBuffer | [GPUBuffer, number])[],
  units: number,
  params: (first: number, count: number) => ArrayBufferView,
  wg = 256,
): void {
  const banded = bindings.filter((b): b is [GPUBuffer, number] => Array.isArray(b));
  for (const band of unitBands(gpu, units, banded)) {
    const buffers = bindings.map((b) => Array.isArray(b) ? unitBinding(gpu, b[0], b[1], band) : b);
    launch(gpu, kernel, buffers, band.count, params(band.first, band.count), wg);
  }
}
