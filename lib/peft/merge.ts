/**
 * Merging adapters into the frozen weights, and writing a merged Hugging Face model directory.
 *
 * - {@link encodeMerge} adds ΔW (or subtracts it, to unmerge) into a layer's weight on the GPU,
 *   in the weight's storage orientation (GPT-2's Conv1D gets ΔWᵀ) and dtype (an f16 weight is
 *   updated in f32 and rounded once); a ΔW over one storage binding is built (a spectral
 *   adapter's in bands of its rows) and added in bands. Unmerging subtracts the same ΔW, so
 *   merge then unmerge gives the weight back to float rounding (exactly, where w + ΔW − ΔW
 *   rounds back to w).
 * - {@link writeMergedModel} writes a copy of the source checkpoint with every adapted weight
 *   replaced by W + ΔW, computed in float64 from the stored values and rounded to the stored
 *   dtype (F32, F16, BF16 or F64: F32 and F64 once; F16 and BF16 via f32, as lib/io/dtype.ts
 *   converts, which can differ from a direct rounding in the last bit), and the modules_to_save
 *   parameters replaced by their trained values (new keys, such as a fresh classifier, are added
 *   in the checkpoint's most common float dtype); the `dtype` option stores all of these as one
 *   dtype. A value the dtype cannot hold (NaN, ±Infinity, or one that rounds to ±Infinity, as
 *   W + ΔW can beyond F16's ±65504) is an error, and the directory is then not written (as
 *   PEFT's safe_merge refuses non-finite merged weights). Every other tensor
 *   is copied bit for bit; key names, shapes, sharding (the index and shard file names) and
 *   `__metadata__` are kept (the index's `total_size` counts the tensors written). The directory's
 *   other files (config.json, tokenizer files, …) and its `additional_chat_templates/` are copied
 *   as files (links followed, as a Hugging Face cache snapshot links them into blobs/); weights in
 *   other formats (.bin, .pt, …), other folders and an adapter_config.json are not. The new
 *   directory is written beside the target (the folder a link names) and renamed into place; of
 *   an overwritten target, what is no model file (notes, other folders) is kept, unless the merged
 *   model has a file of that name. Each changed tensor is
 *   computed as the writer reaches it, so the host holds about one tensor at a time.
 * @module
 */
import { basename, dirname, join } from "node:path";
import { unitBands, unitBinding } from "../gpu/bands.ts";
import { grid, readF32 } from "../gpu/buffers.ts";
import type { Gpu } from "../gpu/device.ts";
import { writeDirAtomic, writeFileAtomic } from "../io/atomic.ts";
import { type Dtype, DTYPES, firstUnstorable, FLOAT_RANGE, type FloatDtypeName } from "../io/dtype.ts";
import { isWithin, statOrNull } from "../io/paths.ts";
import { openCheckpoint, openSafetensors, ShardedCheckpoint, type TensorSource } from "../io/safetensors.ts";
import { type LazyTensor, writeSafetensorsLazily } from "../io/safetensors_write.ts";
import type { Model } from "../models/model.ts";
import "../models/families.ts";
import { getFamily } from "../models/registry.ts";
import { checkCheckpoint } from "../models/shapes.ts";
import { checkpointKey } from "../nn/load.ts";
import type { Linear } from "../nn/linear.ts";
import type { Tensor } from "../tensor/mod.ts";
import { addScaledKernel } from "../../kernels/peft.ts";
import { WG } from "../../kernels/indexing.ts";
import { ADAPTER_CONFIG_FILE } from "./files.ts";
import type { PeftLayer } from "./layer.ts";
import { classifierLabels, shapesOfModel } from "./model_shapes.ts";

/** Throws unless `layer`'s ΔW can be added into `lin`'s weight in place (its shape, an f32 or f16 weight). */
export function checkMergeable(lin: Linear, layer: PeftLayer): void {
  const w = lin.weight;
  if (layer.outFeatures !== lin.outFeatures || layer.inFeatures !== lin.inFeatures) {
    throw new Error(
      `${lin.path}: the ${layer.kind} adapter is for a ${layer.outFeatures}×${layer.inFeatures} layer (out×in), ` +
        `the layer is ${lin.outFeatures}×${lin.inFeatures}`,
    );
  }
  if (w.dtype !== "f32" && w.dtype !== "f16") {
    throw new Error(
      `${lin.path}: cannot merge into a ${w.describe()} weight (quantized codes cannot hold W + ΔW); ` +
        `load the model as f32 or f16 to merge, or write a merged model from its checkpoint (saveMerged, hartley merge)`,
    );
  }
}

/**
 * Throws when one of the adapted layers `paths` has its weight tied to another parameter (GPT-2's
 * lm_head is its token embedding): merging ΔW into it would change that one too. Adapting such a
 * layer is fine (ΔW adds on its output alone): it is only not merged.
 */
export function checkUntied(model: Model, paths: Iterable<string>): void {
  const linears = shapesOfModel(model).linears;
  for (const path of paths) {
    const tiedTo = linears.find((l) => l.path === path)?.tiedTo;
    if (tiedTo) {
      throw new Error(
        `cannot merge the adapter of "${path}": its weight is "${tiedTo}" too (tied), which merging would ` +
          `change as well; use the adapter unmerged, on its base model, or adapt other layers than "${path}"`,
      );
    }
  }
}

/** A layer's weight ± ΔW on the GPU (encoded; see the module doc). */
export function encodeMerge(lin: Linear, layer: PeftLayer, sign: 1 | -1 = 1): void {
  checkMergeable(lin, layer);
  const w = lin.weight, dtype = w.dtype as "f32" | "f16"; // checkMergeable refused the others
  const gpu = w.gpu, count = w.size, bytes = dtype === "f16" ? 2 : 4;
  const delta = gpu.pool.acquire(count * 4, undefined, "peft.merge_delta");
  layer.encodeDeltaWeight(delta, { transposed: lin.layout === "in_out" });
  // a ΔW over one storage binding is added in bands of elements
  for (const band of unitBands(gpu, count, [[delta, 4], [w.buffer, bytes]])) {
    const params = new Uint32Array([band.count, 0]);
    new Float32Array(params.buffer)[1] = sign;
    const bufs = [unitBinding(gpu, delta, 4, band), unitBinding(gpu, w.buffer, bytes, band)];
    gpu.stream.dispatch(addScaledKernel(dtype), bufs, grid(gpu, Math.ceil(band.count / WG)), params);
  }
  gpu.pool.release(delta);
  w.touch();
}

/** ΔW of `layer` (M×N, or N×M with `transposed`) as f32 values (reads back). */
export async function readDeltaWeight(gpu: Gpu, layer: PeftLayer, transposed = false): Promise<Float32Array> {
  const count = layer.outFeatures * layer.inFeatures;
  const buf = gpu.pool.acquire(count * 4, undefined, "peft.delta_read");
  try {
    layer.encodeDeltaWeight(buf, { transposed });
    return await readF32(gpu, buf, count);
  } finally {
    gpu.pool.release(buf);
  }
}

/** What {@link writeMergedModel} merges. */
export interface MergeSource {
  /** The adapted model (its config.json's folder holds the checkpoint merged, by default). */
  model: Model;
  /** The adapter layers by linear path. */
  layers: ReadonlyMap<string, PeftLayer>;
  /** Trained parameters (modules_to_save) by model key. */
  saved: ReadonlyMap<string, Tensor>;
}

/** Options of {@link writeMergedModel}. */
export interface WriteMergedOptions {
  /** The model directory the weights came from (default: the folder of the model's config.json). */
  sourceDir?: string;
  /** Replace an existing `dir` (default false: an existing directory is an error). */
  overwrite?: boolean;
  /**
   * Names of a classification head's labels, written as config.json's id2label (default: the
   * model config's labels when their count matches the head, else LABEL_0, LABEL_1, …).
   */
  labelNames?: readonly string[];
  /**
   * Store every tensor that changes (W + ΔW, a trained parameter) as this float dtype (default:
   * the one it is stored as, a new key the checkpoint's most common): a training checkpoint keeps
   * F32, so that resuming from it restores its weights exactly. The other tensors stay as stored.
   */
  dtype?: "F32" | "F16" | "BF16" | "F64";
  /**
   * Told of each tensor that changes (W + ΔW, a trained parameter), by the name it is written
   * under: "computed" when its values are in memory, "written" once they are in the file and let
   * go. Each is computed as the writer reaches it, so one is held at a time.
   */
  onMerged?: (name: string, step: "computed" | "written") => void;
  /** Told the bytes of tensors written so far and all there are to write, as each is written. */
  onProgress?: (done: number, total: number) => void;
}

const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|ckpt|h5|msgpack|onnx|gguf)$|\.index\.json$/;
/** The folders of a model directory that the merged model has too (transformers' named chat templates). */
const MODEL_FOLDERS = ["additional_chat_templates"];
/**
 * Files that transformers reads from a model directory besides weights (configs, tokenizer and
 * processor files, chat templates): an overwritten target's are dropped, never mixed with the
 * merged model's. What else it holds (notes, other folders) is kept.
 */
const MODEL_FILE = /\.(json|jinja|model)$|^(vocab\.|merges\.txt$)/;

/**
 * Write the merged model into the new directory `dir` (see the module doc). The model's own
 * weights are not changed (this works whether or not the adapters are merged on the GPU).
 * @throws Error when `dir` exists (without `overwrite`), is the source directory, an adapted
 *   weight is tied to another parameter (`checkUntied`), a weight holds an adapter detached with
 *   `keepMerged` (`checkUnaltered`), or the source checkpoint lacks one.
 */
export async function writeMergedModel(
  src: MergeSource,
  dir: string,
  opts: WriteMergedOptions = {},
): Promise<void> {
  const { model } = src;
  checkUntied(model, src.layers.keys());
  checkUnaltered(model);
  const sourceDir = opts.sourceDir ?? dirname(model.config.path);
  if (isWithin(sourceDir, dir)) {
    throw new Error(`${dir}: the merged model cannot replace the directory holding its source, ${sourceDir}`);
  }
  const existing = await statOrNull(dir);
  if (existing && !opts.overwrite) throw new Error(`${dir} already exists (pass overwrite to replace it)`);
  if (existing && !existing.isDirectory) throw new Error(`${dir} exists and is not a directory`);
  const source = await openCheckpoint(sourceDir);
  const { replaced, nameOf } = mergedTensors(src, source, opts.dtype);
  await writeDirAtomic(dir, async (tmp) => {
    await writeCheckpoint(source, replaced, tmp, nameOf, opts);
    await copyModelFiles(sourceDir, tmp);
    await describeHead(model, join(tmp, "config.json"), opts.labelNames);
  }, { keep: (name) => !WEIGHT_FILE.test(name) && !MODEL_FILE.test(name) && !MODEL_FOLDERS.includes(name) });
}

/**
 * Refuse a model whose weights hold the ΔW of an adapter detached with `keepMerged`: the merged
 * checkpoint is built from the source's files, which lack it.
 */
function checkUnaltered(model: Model): void {
  const altered = [...model.linears].find(([, lin]) => lin.keptMerges > 0);
  if (altered) {
    throw new Error(
      `"${altered[0]}" holds the ΔW of an adapter detached with keepMerged, which the merged model would ` +
        `lack: it is built from the checkpoint's files. Save the first merge (saveMerged) and load it as the base`,
    );
  }
}

/**
 * Copy the files of the model directory `from` that are no weights into `to`, and its
 * {@link MODEL_FOLDERS} (`nested`: `from` is one of those). A link is followed and the bytes of
 * the file it names are copied. An adapter_config.json is left out: transformers would take the
 * merged folder for an adapter.
 */
async function copyModelFiles(from: string, to: string, nested = false): Promise<void> {
  for await (const e of Deno.readDir(from)) {
    const path = join(from, e.name);
    const stat = await Deno.stat(path).catch((err) => {
      throw err instanceof Deno.errors.NotFound
        ? new Error(`${path}: a link to a file that is missing`)
        : err;
    });
    if (stat.isFile && !WEIGHT_FILE.test(e.name) && e.name !== ADAPTER_CONFIG_FILE) {
      await Deno.copyFile(path, join(to, e.name));
    } else if (stat.isDirectory && !nested && MODEL_FOLDERS.includes(e.name)) {
      await Deno.mkdir(join(to, e.name));
      await copyModelFiles(path, join(to, e.name), true);
    }
  }
}

/**
 * Make the written config.json name the model's head, so that transformers and loadModel
 * rebuild it: `architectures` for the model's task and, for a classifier, `id2label` /
 * `label2id` of the head's label count and the `pad_token_id` the model pools with (a GPT-2 or
 * LLaMA classifier made from a causal LM's directory has none in its source config).
 */
async function describeHead(model: Model, path: string, labelNames?: readonly string[]): Promise<void> {
  const text = await Deno.readTextFile(path);
  const json = JSON.parse(text);
  const described = { ...json };
  const arch = getFamily(model.config.modelType)?.architectures[model.task];
  if (arch) described.architectures = [arch];
  const count = classifierLabels(model);
  if (count !== undefined) {
    const known = labelNames?.length === count
      ? labelNames
      : model.config.labels.length === count
      ? model.config.labels
      : undefined;
    const names = Array.from({ length: count }, (_, i) => known?.[i] ?? `LABEL_${i}`);
    described.id2label = Object.fromEntries(names.map((n, i) => [String(i), n]));
    described.label2id = Object.fromEntries(names.map((n, i) => [n, i]));
    if (json.pad_token_id == null && model.config.padTokenId !== null) {
      described.pad_token_id = model.config.padTokenId;
    }
    // one output is a regression head (transformers infers it too; said outright here)
    const problem = model.config.problemType ?? (count === 1 ? "regression" : null);
    if (problem) described.problem_type = problem;
  }
  // the source's bytes stay when they already describe the head
  const same = Object.keys(described).every((k) => JSON.stringify(described[k]) === JSON.stringify(json[k]));
  if (!same) await Deno.writeTextFile(path, JSON.stringify(described, null, 2) + "\n");
}

type FloatDtype = FloatDtypeName;

/** A tensor the merged checkpoint replaces or adds; its values are computed only when written. */
interface MergedTensor {
  /** The model's key for it (the checkpoint's may lack the model's prefix). */
  modelKey: string;
  dtype: FloatDtype;
  shape: readonly number[];
  values: () => Promise<Float32Array | Float64Array>;
}

/**
 * The tensors that change, by checkpoint key, in their stored dtype (or `dtype`), and the name each
 * checkpoint key is written under: its own, except in a bare backbone's checkpoint (GPT-2's
 * `h.0…` as openai-community/gpt2 has it) that gains a head, which is written under the model's
 * keys throughout (`transformer.h.0…`, and a new `bert.pooler…` too), as transformers'
 * save_pretrained writes a full model.
 */
function mergedTensors(
  src: MergeSource,
  source: TensorSource,
  dtype?: FloatDtype,
): { replaced: Map<string, MergedTensor>; nameOf: (key: string) => string } {
  const { model } = src;
  const shapes = shapesOfModel(model);
  const match = checkCheckpoint(shapes, source, model.config.architectures[0]);
  const keyOf = (k: string) => checkpointKey(k, shapes.basePrefix, match.prefix);
  const out = new Map<string, MergedTensor>();
  for (const [path, layer] of src.layers) {
    const lin = model.linears.get(path);
    if (!lin) throw new Error(`merge: the model has no linear layer "${path}"`);
    const key = keyOf(`${path}.weight`);
    out.set(key, mergedWeight(source, key, lin, layer, dtype));
  }
  const common = commonFloatDtype(source);
  for (const [k, t] of src.saved) {
    const key = keyOf(k);
    const stored = dtype ?? (source.has(key) ? floatDtype(source.info(key).dtype, key) : common);
    const values = async () => {
      const trained = Float32Array.from(await t.toArray());
      const bad = firstUnstorable(trained, stored);
      if (bad >= 0) {
        const at = `merge: the trained "${k}" holds ${trained[bad]} at index ${bad}`,
          max = FLOAT_RANGE[stored].max;
        throw new Error(
          Number.isFinite(trained[bad])
            ? `${at}, beyond ${stored}'s range (largest ${max}); write it as F32 (saveMerged's dtype option, merge's --merged-dtype f32)`
            : `${at}: its trained values are not finite (did the training diverge?)`,
        );
      }
      return trained;
    };
    out.set(key, { modelKey: k, dtype: stored, shape: [...t.shape], values });
  }
  const prefixed = match.prefix !== shapes.basePrefix && [...out.keys()].some((k) => !source.has(k));
  const nameOf = (k: string) => {
    if (!prefixed) return k;
    const modelKey = out.get(k)?.modelKey;
    if (modelKey !== undefined) return modelKey;
    // a head model's checkpoint keeps its head's keys (cls.…) for a bare model
    return k.startsWith(match.prefix) ? shapes.basePrefix + k.slice(match.prefix.length) : k;
  };
  return { replaced: out, nameOf };
}

/**
 * W + ΔW of `lin`'s stored weight `key`, written as `dtype` (default: as stored): checked now,
 * computed in float64 when written, and refused there when `dtype` cannot hold a value.
 */
function mergedWeight(
  source: TensorSource,
  key: string,
  lin: Linear,
  layer: PeftLayer,
  dtype?: FloatDtype,
): MergedTensor {
  if (!source.has(key)) {
    throw new Error(
      `${source.path}: no tensor "${key}" to merge the adapter of "${lin.path}" into (a tied weight?)`,
    );
  }
  const info = source.info(key);
  const count = layer.outFeatures * layer.inFeatures;
  if (info.shape.reduce((a, b) => a * b, 1) !== count) {
    throw new Error(`${source.path}: "${key}" is [${info.shape}], the adapter's ΔW has ${count} values`);
  }
  const written = dtype ?? floatDtype(info.dtype, key);
  const values = async () => {
    const stored = info.dtype === "F64" ? await source.read(key) as Float64Array : await source.readF32(key);
    const delta = await readDeltaWeight(lin.weight.gpu, layer, lin.layout === "in_out");
    const sum = new Float64Array(count);
    for (let i = 0; i < count; i++) sum[i] = stored[i] + delta[i];
    const bad = firstUnstorable(sum, written);
    if (bad >= 0) {
      const at = `at index ${bad} of "${key}" [${info.shape}]`;
      throw new Error(
        !Number.isFinite(stored[bad])
          ? `${source.path}: the base weight holds ${stored[bad]} ${at}, so W + ΔW cannot be finite; ` +
            `merge into a base whose weights are finite`
          : !Number.isFinite(delta[bad])
          ? `merge: the adapter's ΔW of "${lin.path}" holds ${delta[bad]} ${at}: the adapter is broken ` +
            `(not finite); retrain it, or check its weights`
          : `merge: W + ΔW is ${sum[bad]} ${at} (W ${stored[bad]}, ΔW ${delta[bad]}), which overflows ` +
            `${written}'s range (largest ${
              FLOAT_RANGE[written].max
            }); keep the adapter separate (load it onto ` +
            `the base unmerged)` +
            (written === "F32"
              ? ""
              : `, or write the merged model as F32 (saveMerged's dtype option, merge's --merged-dtype f32)`),
      );
    }
    return sum;
  };
  return { modelKey: `${lin.path}.weight`, dtype: written, shape: info.shape, values };
}

function floatDtype(d: Dtype, key: string): FloatDtype {
  if (d === "F32" || d === "F16" || d === "BF16" || d === "F64") return d;
  throw new Error(`merge: "${key}" is stored as ${d}, not a float dtype`);
}

/** The float dtype most tensors of `source` have (F32 when it has none). */
function commonFloatDtype(source: TensorSource): FloatDtype {
  const counts = new Map<string, number>();
  for (const n of source.names) {
    const d = source.info(n).dtype;
    if (d === "F32" || d === "F16" || d === "BF16" || d === "F64") counts.set(d, (counts.get(d) ?? 0) + 1);
  }
  const best = [...counts].sort((a, b) => b[1] - a[1])[0];
  return (best?.[0] ?? "F32") as FloatDtype;
}

/**
 * Write `source` with `replaced` tensors into the folder `dir`, in the same files (and index),
 * each tensor under `nameOf(key)`, one tensor in memory at a time.
 */
async function writeCheckpoint(
  source: TensorSource,
  replaced: Map<string, MergedTensor>,
  dir: string,
  nameOf: (key: string) => string,
  { onMerged, onProgress }: Pick<WriteMergedOptions, "onMerged" | "onProgress">,
): Promise<void> {
  const files = new Map<string, string[]>();
  const sharded = source instanceof ShardedCheckpoint;
  for (const name of source.names) {
    const file = sharded ? basename(source.fileOf(name)) : basename(source.path);
    if (!files.has(file)) files.set(file, []);
    files.get(file)!.push(name);
  }
  const added = [...replaced.keys()].filter((k) => !source.has(k));
  const lastFile = [...files.keys()].pop()!;
  files.get(lastFile)!.push(...added);
  const bytesOf = (t: { dtype: keyof typeof DTYPES; shape: readonly number[] }) =>
    t.shape.reduce((a, b) => a * b, 1) * DTYPES[t.dtype].size;
  const shards = [...files].map(([file, keys]) => ({
    file,
    tensors: keys.map((key): LazyTensor => {
      const name = nameOf(key), r = replaced.get(key);
      if (!r) return { name, ...source.info(key), data: () => source.read(key) };
      const data = async () => {
        const values = await r.values();
        onMerged?.(name, "computed");
        return values;
      };
      return { name, dtype: r.dtype, shape: r.shape, data, written: () => onMerged?.(name, "written") };
    }),
  }));
  const total = shards.reduce((n, { tensors }) => n + tensors.reduce((m, t) => m + bytesOf(t), 0), 0);
  let written = 0;
  for (const { file, tensors } of shards) {
    const told = tensors.map((t) => ({
      ...t,
      written: () => {
        t.written?.();
        written += bytesOf(t);
        onProgress?.(written, total);
      },
    }));
    const meta = sharded
      ? (await openSafetensors(join(dirname(source.path), file))).metadata
      : source.metadata;
    await writeSafetensorsLazily(join(dir, file), told, Object.keys(meta).length > 0 ? meta : undefined);
  }
  if (sharded) {
    const index = JSON.parse(await Deno.readTextFile(source.path));
    // the index names tensors as stored; the shards hold them under the names they are read as
    const readName = new Map([...(source.renamed ?? [])].map(([name, stored]) => [stored, name]));
    index.weight_map = Object.fromEntries(
      [...Object.entries(index.weight_map), ...added.map((k) => [k, lastFile])].map((
        [k, f],
      ) => [nameOf(readName.get(k) ?? k), f]),
    );
    // merged tensors may take another dtype or size than the source's (F32 over BF16, a new head)
    if (typeof index.metadata?.total_size === "number") index.metadata.total_size = total;
    await writeFileAtomic(join(dir, basename(source.path)), JSON.stringify(index, null, 2) + "\n");
  }
}
