/**
 * hartley — fine-tune transformers with SSH (Sparse Spectrum Adaptation via the Discrete
 * Hartley Transform) on WebGPU.
 *
 * ```ts
 * import { getGpu } from "@hartley/hartley";
 * const gpu = await getGpu();
 * console.log(gpu.description);
 * ```
 * @module
 */
export * from "./lib/gpu/mod.ts";
