/**
 * hartley — fine-tune transformers with SSH (Sparse Spectrum Adaptation via the Discrete
 * Hartley Transform) on WebGPU: load a Hugging Face model directory, attach SSH (or LoRA,
 * FourierFT), train, and write a PEFT-layout adapter or a merged model directory.
 *
 * ```ts
 * import { adapterGroups, attachAdapter, type BatchIterator, getGpu, loadModel, sshConfig, train } from "@hartley/hartley";
 * declare const batches: BatchIterator; // the training data, below
 * const gpu = await getGpu();
 * const model = await loadModel(gpu, "models/roberta-base", { task: "seq-cls", numLabels: 2 });
 * const config = sshConfig({ n: 750, targetModules: ["query", "value"], taskType: "SEQ_CLS" }); // + the head
 * const peft = await attachAdapter(model, config);
 * await train({
 *   model, task: "seq-cls", data: batches, totalSteps: 1000, warmupSteps: 60, seed: 0,
 *   groups: adapterGroups(peft, { lr: 0.05, headLr: 1e-3 }),
 *   setTraining: (on) => peft.train(on),
 * });
 * await peft.save("out/adapter");
 * ```
 *
 * `batches` is a {@link BatchIterator} over a {@link ClassificationDataset}; examples/finetune.ts
 * is a whole program of the same shape. The lower layers are exported too: the WebGPU runtime, the spectral
 * kernels ({@link SpectralAdapterOp}, {@link selectPositions}), the `tensor` ops and the
 * safetensors, config and tokenizer readers.
 * @module
 */
export * from "./lib/gpu/mod.ts";
export { encodeFht, type FhtOptions, type FhtPlan, planFht } from "./lib/spectral/fht.ts";
export { encodeTransform2d, type Transform, type Transform2dOptions } from "./lib/spectral/transforms.ts";
export {
  encodeEnergy,
  NonFiniteEnergyError,
  type SelectOptions,
  selectPositions,
  topkEnergy,
} from "./lib/spectral/select.ts";
export { type SpectralAdapterConfig, SpectralAdapterOp, SpectralSaved } from "./lib/spectral/adapter_op.ts";
export { type SparseEntry, SparseSpectrum } from "./lib/spectral/sparse.ts";
export { Prng } from "./lib/spectral/prng.ts";
export { encodeMatmul, type EpilogueActivation, type MatmulTile } from "./lib/linalg/matmul.ts";
export {
  MATMUL_TILES,
  type MatmulOptions,
  type MatmulTileName,
  type MatrixLayout,
} from "./lib/linalg/matmul_plan.ts";
export * as tensor from "./lib/tensor/mod.ts";
export {
  type DropoutKey,
  type DropoutRows,
  type DType,
  IGNORE_INDEX,
  type QuantKind,
  type Shape,
  Tensor,
  type TensorOptions,
} from "./lib/tensor/mod.ts";
export { type GradNode, type GradRule } from "./lib/tensor/autograd.ts";
// the errors that public functions throw, for `instanceof`
export { ShapeError } from "./lib/models/shapes.ts";
export { TargetError } from "./lib/peft/targets.ts";
export { TextTooLongError, TokenizerError } from "./lib/io/tokenizer.ts";
export { HfConfigError } from "./lib/io/config_fields.ts";
export { ModelDirError } from "./lib/models/load.ts";
export { SafetensorsError } from "./lib/io/safetensors.ts";
export { ParquetError, TableError } from "./lib/io/parquet.ts";
export { ArrowError } from "./lib/io/arrow.ts";
export { ImageError } from "./lib/io/image.ts";
export { CsvError } from "./lib/io/csv.ts";
export { CacheRotationError } from "./lib/models/kv_cache.ts";
export {
  type LinearShape,
  type ModelShapes,
  type ParamShape,
  type WeightStorage,
} from "./lib/models/shapes.ts";
export { type FoldedUpdate, Linear, type LinearAdapter, type WeightLayout } from "./lib/nn/linear.ts";
export { WEIGHT_DTYPES, type WeightDtype } from "./lib/nn/load.ts";
export { formatBytes, storageSummary } from "./lib/models/storage.ts";
export {
  openCheckpoint,
  openSafetensors,
  SafetensorsFile,
  type TensorInfo,
  type TensorSource,
} from "./lib/io/safetensors.ts";
export { type TensorData, writeSafetensors } from "./lib/io/safetensors_write.ts";
export { type Dtype, type TypedArray } from "./lib/io/dtype.ts";
export {
  type Activation,
  type BertConfig,
  type CommonConfig,
  type Gpt2Config,
  type HfConfig,
  type LlamaConfig,
  type LlamaModelType,
  loadHfConfig,
  type ModelType,
  PROBLEM_TYPES,
  type ProblemType,
  SUPPORTED_MODEL_TYPES,
  type VitConfig,
} from "./lib/io/hf_config.ts";
export { type GenerationConfig, loadGenerationConfig } from "./lib/io/generation_config.ts";
export { type RopeConfig } from "./lib/io/rope_config.ts";
export {
  type Batch,
  type BatchOptions,
  loadTokenizer,
  type SpecialTokens,
  Tokenizer,
} from "./lib/io/tokenizer.ts";
export {
  loadModel,
  type LoadModelOptions,
  loadModelTokenizer,
  type LoadNotes,
  registeredFamilies,
} from "./lib/models/load.ts";
export {
  type Batch as ModelBatch,
  type ForwardOptions,
  type Model,
  type ModelOutput,
  type ModelTask,
} from "./lib/models/model.ts";
export { KvCache, type KvCacheDtype, type KvCacheShape, type KvColumns } from "./lib/models/kv_cache.ts";
export type { PrefixAttentionOptions } from "./lib/tensor/mod.ts";
export {
  type AdapterConfig,
  AdapterConfigError,
  type CommonAdapterConfig,
  type ConfigOptions,
  type FourierFTConfig,
  fourierftConfig,
  type Init,
  type LoraConfig,
  loraConfig,
  type PeftType,
  type Selection,
  type SSHConfig,
  sshConfig,
  SUPPORTED_PEFT_TYPES,
  type TargetModules,
  TASK_TYPES,
  type TaskType,
} from "./lib/peft/config.ts";
export {
  applyAdapter,
  attachAdapter,
  type AttachOptions,
  loadAdapterInto,
  type LoadIntoOptions,
  PeftModel,
} from "./lib/peft/apply.ts";
export { AdapterFileError } from "./lib/peft/check_adapter.ts";
export { type DeltaWeightOptions, type PeftLayer } from "./lib/peft/layer.ts";
export { type DropoutState } from "./lib/peft/lora.ts";
export {
  type Adapter,
  type AdapterBase,
  type FourierFTAdapter,
  type FourierFTModule,
  loadAdapter,
  type LoadOptions as LoadAdapterOptions,
  type LoraAdapter,
  type LoraModule,
  saveAdapter,
  type SavedTensor,
  type SaveOptions as SaveAdapterOptions,
  type SSHAdapter,
  type SSHModule,
} from "./lib/peft/files.ts";
export { type MergeSource, writeMergedModel, type WriteMergedOptions } from "./lib/peft/merge.ts";
export {
  CausalLmDataset,
  type CausalLmOptions,
  ClassificationDataset,
  type ClassificationDatasetOptions,
  type Dataset,
  type Row,
} from "./lib/train/data.ts";
export {
  BatchIterator,
  type BatchIteratorOptions,
  type Position,
  type TrainBatch,
} from "./lib/train/batches.ts";
export {
  type ClassificationData,
  type DataFormat,
  type Example,
  readClassificationFile,
  type ReadOptions,
  readTextFile,
  readTexts,
  TEXT_FIELDS,
} from "./lib/train/readers.ts";
export {
  type DataTable,
  readTable,
  tableClassLabels,
  tableColumns,
  type TableFormat,
  tableFormatOf,
} from "./lib/io/data_table.ts";
export { DataError } from "./lib/train/data_error.ts";
export {
  type ChatInstruction,
  type Instruction,
  InstructionDataset,
  instructionDataset,
  type InstructionDatasetOptions,
  type InstructionDatasetResult,
  type InstructionQuery,
  instructionQuery,
  type InstructionTokens,
  isInstructionRecord,
  type LossOn,
  readInstructions,
  type TextInstruction,
  tokenizeInstruction,
} from "./lib/train/instruct.ts";
export { instructionDatasetOnWorkers } from "./lib/train/instruct_workers.ts";
export {
  checkTags,
  isConllFile,
  isTaggedRecord,
  readTaggedFile,
  readWordLists,
  TAG_FIELDS,
  type TaggedData,
  type TaggedExample,
  type TaggedReadOptions,
  TokenClassificationDataset,
  type TokenClassificationOptions,
  WORD_FIELDS,
  type WordList,
} from "./lib/train/token_data.ts";
export {
  entities,
  type Entity,
  type EntityScores,
  entityScores,
  isEntityTag,
  isEntityTagSet,
  type TypeScores,
} from "./lib/train/entities.ts";
export {
  namedEntities,
  type NamedEntity,
  splitWords,
  splitWordSpans,
  type TaggedWords,
  type TagOptions,
  tagWords,
} from "./lib/infer/tag.ts";
export {
  type ChatMessage,
  type ChatTemplate,
  chatTemplate,
  ChatTemplateError,
  type GenerationRender,
  loadChatTemplate,
} from "./lib/io/chat_template.ts";
export {
  type BatchSource,
  type EvalResult,
  evaluate,
  type HostBatch,
  type ImageBatch,
  ImageBatches,
  type ImageExample,
  type ImagePixels,
  inOrder,
  type StreamedImage,
  type TaskName,
  toModelBatch,
} from "./lib/train/tasks.ts";
export { type AdapterGroupOptions, adapterGroups } from "./lib/train/groups.ts";
export { f1, matthews, multiLabelScores, pearson, spearman } from "./lib/train/metrics.ts";
export {
  decodeImageList,
  decodeImages,
  type ImageData,
  type ImageDataOptions,
  type ImageList,
  type ListedImage,
  listImageData,
  listImages,
  readImageData,
  readImages,
  type SourcedImage,
  type UnloadedImage,
} from "./lib/train/image_data.ts";
export { decodeImage, ImageFileError, readImageFile } from "./lib/io/image_files.ts";
export {
  type ImageProcessorConfig,
  loadImageProcessorConfig,
  preprocessImage,
  type RgbImage,
} from "./lib/io/image.ts";
export {
  classify,
  classifyImages,
  type ClassifyOptions,
  type ImageInput,
  type Prediction,
  type TextInput,
} from "./lib/infer/predict.ts";
export {
  endTokenIds,
  generate,
  generateBatch,
  type GenerateBatchOptions,
  type GenerateOptions,
  type Generation,
  GREEDY_TOKENS_PER_READ,
  keepSharedPrefix,
} from "./lib/infer/generate.ts";
export { applyRepetitionPenalty, sampleToken, type SamplingCuts } from "./lib/infer/sampling.ts";
export { Chat, type ChatOptions } from "./lib/infer/chat.ts";
export {
  BEST_DIR,
  type BestOptions,
  type NamedParam,
  type ParamGroupSpec,
  train,
  TrainingDivergedError,
  type TrainOptions,
  type TrainResult,
} from "./lib/train/trainer.ts";
export { AdamW, type AdamWOptions, type ParamGroup } from "./lib/train/optim.ts";
export {
  type BestMetric,
  type BestState,
  CheckpointError,
  findCheckpoint,
  loadCheckpoint,
  type LoadedCheckpoint,
  type OptimizerState,
  type TrainerState,
} from "./lib/train/checkpoint.ts";
export { type LogRecord, RunLog } from "./lib/train/log.ts";
export {
  Progress,
  type ProgressOptions,
  type ProgressSink,
  type ProgressStats,
} from "./lib/train/progress.ts";
export { lrAt, lrFactor, type ScheduleOptions } from "./lib/train/schedule.ts";
