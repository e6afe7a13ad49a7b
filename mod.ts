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
export { encodeTransform2d, type Transform, type Transform2dOptions } from "./lib/spectral/transforms.ts";
export { encodeEnergy, type SelectOptions, selectPositions, topkEnergy } from "./lib/spectral/select.ts";
export { type SpectralAdapterConfig, SpectralAdapterOp, SpectralSaved } from "./lib/spectral/adapter_op.ts";
export { type SparseEntry, SparseSpectrum } from "./lib/spectral/sparse.ts";
export { Prng } from "./lib/spectral/prng.ts";
export {
  encodeMatmul,
  type EpilogueActivation,
  MATMUL_TILES,
  type MatmulOptions,
  type MatmulTile,
  type MatmulTileName,
  type MatrixLayout,
} from "./lib/linalg/matmul.ts";
export * as tensor from "./lib/tensor/mod.ts";
export {
  openCheckpoint,
  openSafetensors,
  SafetensorsFile,
  type TensorData,
  type TensorInfo,
  type TensorSource,
  writeSafetensors,
} from "./lib/io/safetensors.ts";
export { type Dtype, type TypedArray } from "./lib/io/dtype.ts";
export {
  type Activation,
  type BertConfig,
  type CommonConfig,
  type Gpt2Config,
  type HfConfig,
  type LlamaConfig,
  loadHfConfig,
  type ModelType,
  type ProblemType,
  type RopeConfig,
  SUPPORTED_MODEL_TYPES,
  type VitConfig,
} from "./lib/io/hf_config.ts";
export {
  type Batch,
  type BatchOptions,
  loadTokenizer,
  type SpecialTokens,
  Tokenizer,
} from "./lib/io/tokenizer.ts";
