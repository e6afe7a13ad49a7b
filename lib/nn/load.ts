/**
 * Read a checkpoint's parameters into GPU tensors: every stored parameter that
 * {@link modelShapes} lists is shape-checked against the checkpoint, its dtype checked
 * (F32, F16 or BF16), and uploaded as f32, or when asked as f16 storage of the frozen matrices,
 * or with the frozen linear weights quantized (q8, q4) on the GPU; a parameter stored rounded can
 * still be read as its checkpoint holds it ({@link storedValues}).
 * Head parameters the checkpoint lacks (a new classifier) are initialised as transformers
 * does (normal(0, initializer_range) weights, zero biases, unit norm weights) from a seeded
 * PRNG. Every error names the checkpoint file and the tensor.
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import type { Dtype } from "../io/dtype.ts";
import { toFloat32 } from "../io/dtype.ts";
import { SafetensorsError, type TensorSource } from "../io/safetensors.ts";
import { checkCheckpoint, type ModelShapes, type ParamShape } from "../models/shapes.ts";
import { Prng } from "../spectral/prng.ts";
import { initKind } from "./init.ts";
import { keep, QUANT_GROUP, quantize, type QuantKind, Tensor } from "../tensor/mod.ts";

/**
 * Storage of frozen weights: f32, f16 (halves memory; needs `gpu.f16`), or the linear layers'
 * weights quantized as q8 (int8 codes, ≈ 0.28× f32) or q4 (4-bit codes, ≈ 0.16×), each group of
 * 32 values with an f32 scale (lib/tensor/quant_format.ts).
 */
export type WeightDtype = "f32" | "f16" | QuantKind;

/** The storage dtypes of frozen weights, for flags and messages. */
export const WEIGHT_DTYPES: readonly WeightDtype[] = ["f32", "f16", "q8", "q4"];

/** Options of {@link loadWeights}. */
export interface LoadWeightsOptions {
  /**
   * Storage of the frozen 2-D matrices (linear weights and embedding tables, except those of a
   * classification head, which is trained): "f32" (default) or "f16". With "q8" or "q4" the
   * blocks' linear weights are quantized as that kind and the embedding tables and LM output
   * layer as q8; a matrix whose stored rows are not a multiple of 32 long is f16 where the device
   * has shader-f16 and f16 can hold its values (else f32). Everything else (norms, biases, heads)
   * is always f32.
   */
  dtype?: WeightDtype;
  /** Seed of the initialisation of head parameters the checkpoint lacks (default 0). */
  seed?: number;
  /** Standard deviation of that initialisation (default 0.02; loadModel passes `initializer_range`). */
  initStd?: number;
  /** Told the bytes of checkpoint tensors read so far, and in all, after each tensor. */
  onProgress?: (done: number, total: number) => void;
  /**
   * The checkpoint's architecture (its config's `architectures[0]`): when it is not `shapes`'
   * one, the head is initialised, not read (see `checkCheckpoint`).
   */
  sourceArchitecture?: string;
}

/** What {@link loadWeights} read. */
export interface LoadedWeights {
  /** Every stored (non-tied) parameter by its key in `shapes` (with the architecture's prefix). */
  params: Map<string, Tensor>;
  /** The checkpoint the weights came from. */
  source: TensorSource;
  /**
   * Prefix the checkpoint's backbone keys carry: `shapes.basePrefix`, or "" for a checkpoint
   * saved from the bare backbone. Use {@link checkpointKey} to map a parameter key back.
   */
  prefix: string;
  /** Head parameters the checkpoint lacks; they were initialised (see the module doc). */
  initialised: string[];
  /** Checkpoint tensors that are no parameter of `shapes` (e.g. another head's); not loaded. */
  unexpected: string[];
}

const FLOAT_DTYPES: readonly Dtype[] = ["F32", "F16", "BF16", "F64"];
const F16_MAX = 65504;
/** Bytes of uploads encoded before loadWeights submits them. */
const FLUSH_BYTES = 256 * 2 ** 20;

/**
 * Read every stored parameter of `shapes` from `source` onto the GPU (kept: no `tidy` scope
 * frees them; shapes are checked before anything is read). Tied parameters (e.g. GPT-2's
 * `lm_head.weight`) are not in the result: they are the tensor of the key in their `tiedTo`.
 * @throws ShapeError when a backbone tensor is missing or misshapen; SafetensorsError when a
 *   tensor has a non-float dtype, or an f16 value overflows.
 */
export async function loadWeights(
  gpu: Gpu,
  source: TensorSource,
  shapes: ModelShapes,
  opts: LoadWeightsOptions = {},
): Promise<LoadedWeights> {
  const dtype = opts.dtype ?? "f32";
  if (!WEIGHT_DTYPES.includes(dtype)) {
    throw new Error(`loadWeights: dtype "${dtype}" is none of ${WEIGHT_DTYPES.join(", ")}`);
  }
  if (dtype === "f16" && !gpu.f16) {
    throw new Error(`loadWeights: dtype "f16" needs a device with shader-f16 (${gpu.description} has none)`);
  }
  const quantizing = dtype === "q8" || dtype === "q4";
  const matrices = dtype === "f16" || (quantizing && gpu.f16) ? "f16" : "f32";
  const match = checkCheckpoint(shapes, source, opts.sourceArchitecture);
  const keyOf = (k: string) => checkpointKey(k, shapes.basePrefix, match.prefix);
  const missing = new Set(match.missingHead);
  const trainedHeads = shapes.head.filter((h) => h !== shapes.outputLayer);
  const inHead = (key: string) => trainedHeads.some((h) => key.startsWith(h + "."));
  // the blocks' linear weights take the asked kind; the other frozen matrices (embedding tables,
  // the LM output layer), which 4-bit codes would cost too much accuracy, q8, as llama.cpp keeps them finer
  const blockLinears = new Set(
    shapes.linears.filter((l) => !l.tiedTo && l.path !== shapes.outputLayer).map((l) => `${l.path}.weight`),
  );
  const rng = new Prng(opts.seed ?? 0);
  const params = new Map<string, Tensor>();
  const initialised: string[] = [];
  let pending = 0, done = 0;
  const stored = shapes.params.filter((p) => !p.tiedTo && !missing.has(keyOf(p.key)));
  const total = stored.reduce((sum, p) => sum + source.info(keyOf(p.key)).byteLength, 0);
  try {
    for (const p of shapes.params) {
      if (p.tiedTo) continue;
      const key = keyOf(p.key);
      const matrix = p.shape.length === 2 && !inHead(p.key);
      const storage: WeightDtype = !matrix
        ? "f32"
        : !quantizing || p.shape[1] % QUANT_GROUP !== 0
        ? matrices
        : blockLinears.has(p.key)
        ? dtype
        : "q8";
      if (missing.has(key)) {
        params.set(p.key, keep(Tensor.from(gpu, initValues(p, rng, opts.initStd ?? 0.02), p.shape)));
        initialised.push(p.key);
        continue;
      }
      const t = keep(await readParam(gpu, source, key, p, storage, quantizing));
      params.set(p.key, t);
      rememberStored(t, source, key);
      done += source.info(key).byteLength;
      opts.onProgress?.(done, total);
      // submit the uploads now and then, so that their staging copies do not pile up
      pending += source.info(key).byteLength;
      if (pending >= FLUSH_BYTES) {
        gpu.stream.flush();
        pending = 0;
      }
    }
  } catch (e) {
    for (const t of params.values()) t.dispose();
    throw e;
  }
  if (quantizing) {
    // the pool holds the f32 copies the weights were quantized from: give them back to the device
    gpu.stream.flush();
    gpu.pool.trim();
  }
  return { params, source, prefix: match.prefix, initialised, unexpected: match.unexpected };
}

/** Where to read a parameter's checkpoint values again, and its version when loaded ({@link storedValues}). */
const storedSources = new WeakMap<Tensor, { source: TensorSource; key: string; version: number }>();

/** Remember where `t` (checkpoint tensor `key`) came from, unless it holds the stored values exactly. */
function rememberStored(t: Tensor, source: TensorSource, key: string): void {
  const exact = t.dtype === "f32" || (t.dtype === "f16" && source.info(key).dtype === "F16");
  if (!exact) storedSources.set(t, { source, key, version: t.version });
}

/**
 * The values of a parameter that {@link loadWeights} stored rounded (as f16 from another dtype, q8 or
 * q4) as its checkpoint holds them: read again from the checkpoint, as f32 in the storage layout.
 * Null for any other tensor (its values are the stored ones), and once `t` was rewritten in place
 * (a merged ΔW). What must not depend on `dtype` reads these: SSH ranks its positions on them.
 */
export async function storedValues(t: Tensor): Promise<Float32Array | null> {
  const from = storedSources.get(t);
  return from && from.version === t.version ? await from.source.readF32(from.key) : null;
}

/**
 * The checkpoint key of parameter `key` (a key of `shapes`, with `basePrefix`) in a checkpoint
 * whose backbone keys carry `prefix` (`LoadedWeights.prefix`).
 */
export function checkpointKey(key: string, basePrefix: string, prefix: string): string {
  return prefix === basePrefix || !key.startsWith(basePrefix) ? key : prefix + key.slice(basePrefix.length);
}

/**
 * One tensor of the checkpoint, dtype-checked, as a tensor of shape `p.shape` stored as `storage`.
 * With `orF32` (a quantized load, whose f16 matrices the user did not ask for), an f16 matrix that
 * f16 cannot hold is stored as f32 instead of refused.
 */
async function readParam(
  gpu: Gpu,
  source: TensorSource,
  key: string,
  p: ParamShape,
  storage: WeightDtype,
  orF32: boolean,
): Promise<Tensor> {
  const info = source.info(key);
  if (!FLOAT_DTYPES.includes(info.dtype)) {
    throw new SafetensorsError(
      `${source.path}: tensor "${key}" has dtype ${info.dtype}, expected a float weight (${
        FLOAT_DTYPES.join(", ")
      })`,
    );
  }
  const raw = await source.read(key);
  if (storage === "f16") {
    const values = info.dtype === "F16"
      ? new Float16Array(raw.buffer, raw.byteOffset, raw.length)
      : toFloat32(info.dtype, raw);
    const bad = values.findIndex((v) => !(Math.abs(v) <= F16_MAX));
    if (bad < 0) return Tensor.from(gpu, values, p.shape, { dtype: "f16", label: key });
    if (!orF32) {
      throw new SafetensorsError(
        `${source.path}: tensor "${key}" holds ${values[bad]} at ${bad}, which f16 cannot store; ` +
          `load with dtype "f32"`,
      );
    }
    storage = "f32"; // as a device without shader-f16 would store it
  }
  const floats = toFloat32(info.dtype, raw);
  // a code cannot hold NaN or ±Inf: quantizing would hide one, or spread it over its group
  const bad = storage === "f32" ? -1 : floats.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new SafetensorsError(
      `${source.path}: tensor "${key}" holds ${floats[bad]} at ${bad}, which ${storage} cannot store; ` +
        `load with dtype "f32"`,
    );
  }
  const values = Tensor.from(gpu, floats, p.shape, { label: key });
  if (storage === "f32") return values;
  const q = quantize(values, storage, key);
  values.dispose();
  return q;
}

/** transformers' initialisation of a new head parameter: by kind, from `rng`. */
function initValues(p: ParamShape, rng: Prng, std: number): Float32Array {
  const n = p.shape.reduce((a, b) => a * b, 1);
  const kind = initKind(p.key);
  if (kind !== "random") return new Float32Array(n).fill(kind === "ones" ? 1 : 0);
  const out = rng.normals(n);
  for (let i = 0; i < n; i++) out[i] *= std;
  return out;
}
