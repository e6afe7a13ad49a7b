/**
 * hartley — fine-tune transformers with SSH (Sparse Spectrum Adaptation via the Discrete
 * Hartley Transform) on WebGPU.
 *
 * ```ts
 * import { getGpu, SpectralAdapterOp, selectPositions } from "@hartley/hartley";
 * const gpu = await getGpu();
 * console.log(gpu.description);
 * ```
 * @module
 */
export * from "./lib/gpu/mod.ts";
export { encodeFht, type FhtOptions, type FhtPlan, planFht } from "./lib/spectral/fht.ts";
export { encodeTransform2d, type Transform } from "./lib/spectral/transforms.ts";
export { encodeEnergy, type SelectOptions, selectPositions, topkEnergy } from "./lib/spectral/select.ts";
export { type SpectralAdapterConfig, SpectralAdapterOp, SpectralSaved } from "./lib/spectral/adapter_op.ts";
export { Prng } from "./lib/spectral/prng.ts";
export {
  encodeMatmul,
  type EpilogueActivation,
  type MatmulOptions,
  type MatrixLayout,
} from "./lib/linalg/matmul.ts";
export * as tensor from "./lib/tensor/mod.ts";
export { openCheckpoint, openSafetensors, writeSafetensors } from "./lib/io/safetensors.ts";
export { loadHfConfig } from "./lib/io/hf_config.ts";
export { loadTokenizer, Tokenizer } from "./lib/io/tokenizer.ts";
