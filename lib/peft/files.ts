/**
 * Adapter directories in PEFT's layout (SPEC §2): `adapter_config.json` and
 * `adapter_model.safetensors`, whose keys are `base_model.model.<module>.<tensor>`:
 * - SSH: `ssh_spectrum` (F32 [n]) and `ssh_indices` (I32 [n, 2], (row, col) in the layer's
 *   (out, in) orientation);
 * - LoRA: `lora_A.weight` ([r, in]) and `lora_B.weight` ([out, r]), whatever the storage of
 *   the base layer (as PEFT saves them);
 * - FourierFT: `fourierft_spectrum` ([n_frequency]). PEFT does not save FourierFT positions
 *   (it redraws them from random_loc_seed with torch's RNG, as `peftFourierftPositions` does
 *   here); this project also writes them to a side file, `fourierft_indices.safetensors`, with
 *   `base_model.model.<module>.fourierft_indices` (I32 [2, n]: rows, then columns — the layout
 *   of PEFT's own `indices` buffer), which wins when present: adapters of earlier versions drew
 *   their own past torch's randperm threshold, and there the side file saves redrawing (seconds a
 *   layer size). `<module>.indices` keys (as in the reference fixtures) are accepted too.
 * - modules_to_save: each parameter of a saved module under its model key, e.g.
 *   `base_model.model.classifier.out_proj.weight` (PEFT strips its `modules_to_save.<name>`).
 * For SSH and FourierFT the weights file records each layer's (out, in) size in its
 * `__metadata__` (`hartley.layer_shapes`), so an adapter made for another model is told apart
 * exactly; PEFT ignores the entry. The names of a classification head's ids, when the adapter
 * knows them, are kept there too (`hartley.labels`, a JSON array), so a merge or a prediction
 * can name the classes.
 *
 * A save writes every file into a fresh folder beside the target and renames it into place:
 * a crash leaves either the old adapter or the new one (a crash between the two renames
 * leaves the old one beside the target, as `.<name>.<id>.old`). Files of an existing target
 * that are not adapter files (e.g. a README.md) are moved into the new folder.
 * @module
 */
import { join } from "node:path";
import { PROBLEM_TYPES, type ProblemType } from "../io/hf_config.ts";
import { writeDirAtomic, writeFileAtomic } from "../io/atomic.ts";
import type { Dtype, TypedArray } from "../io/dtype.ts";
import { openSafetensors, type SafetensorsFile } from "../io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../io/safetensors_write.ts";
import type { ModelShapes } from "../models/shapes.ts";
import {
  type AdapterConfig,
  adapterConfigToText,
  type FourierFTConfig,
  loadAdapterConfig,
  type LoraConfig,
  type PeftType,
  type SSHConfig,
} from "./config.ts";
import { AdapterFileError, checkAdapter, notALinear } from "./check_adapter.ts";
import { pathExists } from "../io/paths.ts";
import { peftFourierftPositions } from "./fourierft.ts";

/** The config file of an adapter directory. */
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
/** The weights file of an adapter directory. */
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
/** The side file with FourierFT positions. */
export const FOURIERFT_INDICES_FILE = "fourierft_indices.safetensors";
/** The prefix PEFT puts before every module path. */
export const PEFT_KEY_PREFIX = "base_model.model.";

const LAYER_SHAPES_KEY = "hartley.layer_shapes";
const LABELS_KEY = "hartley.labels";
const PROBLEM_KEY = "hartley.problem_type";
/** Files a save owns: replaced or dropped, never carried over from the old directory. */
const ADAPTER_FILES = [
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  FOURIERFT_INDICES_FILE,
  "adapter_model.bin",
];
const FLOAT_DTYPES: Dtype[] = ["F32", "F16", "BF16", "F64"];

/** One SSH layer: n coefficients at distinct positions of the (out × in) spectrum. */
export interface SSHModule {
  /** Output features M of the layer (rows of the spectrum). */
  outFeatures: number;
  /** Input features N of the layer (columns of the spectrum). */
  inFeatures: number;
  /** The coefficients [n]. */
  spectrum: Float32Array;
  /** [n, 2] row-major (row, col) pairs in (out, in) orientation. */
  indices: Int32Array;
}

/** One FourierFT layer; as SSH, but its positions may be left out (PEFT's draw from random_loc_seed). */
export interface FourierFTModule {
  /** Output features M of the layer (rows of the spectrum). */
  outFeatures: number;
  /** Input features N of the layer (columns of the spectrum). */
  inFeatures: number;
  /** The coefficients [n_frequency]. */
  spectrum: Float32Array;
  /**
   * [n, 2] row-major (row, col) pairs in (out, in) orientation; null: those PEFT draws from the
   * config's random_loc_seed (a loaded adapter always has them).
   */
  indices: Int32Array | null;
}

/** One LoRA layer: ΔW = scaling·B·A. */
export interface LoraModule {
  /** Output features M of the layer (rows of lora_B). */
  outFeatures: number;
  /** Input features N of the layer (columns of lora_A). */
  inFeatures: number;
  /** The rank r (rows of lora_A, columns of lora_B). */
  r: number;
  /** lora_A [r, in], row-major. */
  a: Float32Array;
  /** lora_B [out, r], row-major. */
  b: Float32Array;
}

/** One parameter of a module trained in full (modules_to_save), as float32 values. */
export interface SavedTensor {
  /** The parameter's shape in the model. */
  shape: number[];
  /** Its values, row-major. */
  data: Float32Array;
}

/** What every adapter holds: its config, per-module weights, and the modules_to_save tensors. */
export interface AdapterBase<C extends AdapterConfig, M> {
  /** The adapter's configuration (its adapter_config.json). */
  config: C;
  /** Per adapted module path (e.g. "roberta.encoder.layer.0.attention.self.query"). */
  modules: Map<string, M>;
  /** modules_to_save parameters by model key (e.g. "classifier.out_proj.weight"). */
  saved: Map<string, SavedTensor>;
  /** Names of the classification head's ids, when known (from the training data). */
  labels?: string[];
  /**
   * How the head was trained when config.json cannot say (a multi-label or regression head on a
   * base model): transformers' problem_type.
   */
  problemType?: ProblemType;
}

/** An SSH adapter in memory. */
export type SSHAdapter = AdapterBase<SSHConfig, SSHModule>;
/** A LoRA adapter in memory. */
export type LoraAdapter = AdapterBase<LoraConfig, LoraModule>;
/** A FourierFT adapter in memory. */
export type FourierFTAdapter = AdapterBase<FourierFTConfig, FourierFTModule>;
/** Any adapter (discriminated by `config.peftType`). */
export type Adapter = SSHAdapter | LoraAdapter | FourierFTAdapter;

/** Options of {@link loadAdapter}. */
export interface LoadOptions {
  /**
   * The base model's shapes: every module must be a linear layer of it with the same size,
   * selected by the config's target_modules, and the modules_to_save tensors must match.
   * Needed for a FourierFT file written by PEFT (which does not record layer sizes).
   */
  shapes?: ModelShapes;
  /**
   * A safetensors file with FourierFT positions (default: the directory's
   * `fourierft_indices.safetensors` when present).
   */
  fourierftIndices?: string;
}

/**
 * Load and validate an adapter directory.
 * @throws AdapterFileError / AdapterConfigError naming the file, module and tensor at fault.
 */
export async function loadAdapter(dir: string, opts: LoadOptions = {}): Promise<Adapter> {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  if (!(await pathExists(configPath))) {
    throw new AdapterFileError(`${dir}: not an adapter directory (no ${ADAPTER_CONFIG_FILE})`);
  }
  const config = await loadAdapterConfig(configPath);
  const weightsPath = await adapterWeightsPath(dir);
  const file = await openSafetensors(weightsPath);
  const groups = groupKeys(file, config);
  const layerShapes = readLayerShapes(file);
  const sizeOf: SizeOf = (module) => {
    const recorded = layerShapes?.[module];
    if (recorded) return recorded;
    const base = opts.shapes?.linears.find((l) => l.path === module);
    if (base) return [base.outFeatures, base.inFeatures];
    if (opts.shapes) throw new AdapterFileError(`${dir}: ${notALinear(module, opts.shapes)}`);
    throw new AdapterFileError(
      `${weightsPath}: the layer size of "${module}" is not recorded; pass the base model's shapes`,
    );
  };
  const saved = new Map<string, SavedTensor>();
  for (const key of groups.saved) {
    const full = PEFT_KEY_PREFIX + key;
    saved.set(key, { shape: file.info(full).shape, data: await readFloat(file, full) });
  }
  let adapter: Adapter;
  switch (config.peftType) {
    case "SSH":
      adapter = { config, modules: await readSshModules(file, groups.modules, sizeOf), saved };
      break;
    case "LORA":
      adapter = { config, modules: await readLoraModules(file, groups.modules), saved };
      break;
    case "FOURIERFT": {
      const indicesPath = opts.fourierftIndices ??
        (await pathExists(join(dir, FOURIERFT_INDICES_FILE)) ? join(dir, FOURIERFT_INDICES_FILE) : null);
      const side = indicesPath === null ? null : await openSafetensors(indicesPath);
      const modules = await readFourierftModules(file, groups.modules, sizeOf, side, config.randomLocSeed);
      adapter = { config, modules, saved };
      break;
    }
  }
  const labels = readLabels(file);
  if (labels) adapter.labels = labels;
  const problem = file.metadata[PROBLEM_KEY];
  if (problem !== undefined) {
    if (!PROBLEM_TYPES.includes(problem as ProblemType)) {
      throw new AdapterFileError(
        `${file.path}: metadata "${PROBLEM_KEY}" is ${JSON.stringify(problem)}, not one of ${
          PROBLEM_TYPES.join(", ")
        }`,
      );
    }
    adapter.problemType = problem as ProblemType;
  }
  checkAdapter(adapter, dir, opts.shapes);
  return adapter;
}

/**
 * The weights file of the adapter directory `dir`.
 * @throws AdapterFileError when it is missing (naming an adapter_model.bin found instead).
 */
export async function adapterWeightsPath(dir: string): Promise<string> {
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  if (await pathExists(path)) return path;
  const pickle = await pathExists(join(dir, "adapter_model.bin"));
  throw new AdapterFileError(
    `${dir}: no ${ADAPTER_WEIGHTS_FILE}${
      pickle ? " (adapter_model.bin, a PyTorch pickle, is not read: save the adapter with safetensors)" : ""
    }`,
  );
}

type SizeOf = (module: string) => [number, number];

async function readSshModules(
  file: SafetensorsFile,
  groups: Map<string, Set<string>>,
  sizeOf: SizeOf,
): Promise<Map<string, SSHModule>> {
  const modules = new Map<string, SSHModule>();
  for (const [m, present] of groups) {
    const spectrum = await readSpectrum(file, m, present, "ssh_spectrum");
    const key = need(file, m, present, "ssh_indices");
    const shape = file.info(key).shape;
    if (shape.length !== 2 || shape[1] !== 2 || shape[0] !== spectrum.length) {
      throw new AdapterFileError(
        `${file.path}: "${key}" is [${shape}], expected [${spectrum.length}, 2] (one (row, col) per coefficient)`,
      );
    }
    const [outFeatures, inFeatures] = sizeOf(m);
    modules.set(m, { outFeatures, inFeatures, spectrum, indices: await readIndices(file, key) });
  }
  return modules;
}

async function readLoraModules(
  file: SafetensorsFile,
  groups: Map<string, Set<string>>,
): Promise<Map<string, LoraModule>> {
  const modules = new Map<string, LoraModule>();
  for (const [m, present] of groups) {
    const aKey = need(file, m, present, "lora_A.weight"), bKey = need(file, m, present, "lora_B.weight");
    const sa = file.info(aKey).shape, sb = file.info(bKey).shape;
    if (sa.length !== 2 || sb.length !== 2 || sa[0] !== sb[1]) {
      throw new AdapterFileError(
        `${file.path}: module "${m}": lora_A.weight [${sa}] and lora_B.weight [${sb}] must be [r, in] and [out, r]`,
      );
    }
    const a = await readFloat(file, aKey), b = await readFloat(file, bKey);
    modules.set(m, { outFeatures: sb[0], inFeatures: sa[1], r: sa[0], a, b });
  }
  return modules;
}

async function readFourierftModules(
  file: SafetensorsFile,
  groups: Map<string, Set<string>>,
  sizeOf: SizeOf,
  side: SafetensorsFile | null,
  seed: number,
): Promise<Map<string, FourierFTModule>> {
  const modules = new Map<string, FourierFTModule>();
  for (const [m, present] of groups) {
    const spectrum = await readSpectrum(file, m, present, "fourierft_spectrum");
    const [outFeatures, inFeatures] = sizeOf(m);
    if (spectrum.length > outFeatures * inFeatures) {
      throw new AdapterFileError(
        `${file.path}: module "${m}": ${spectrum.length} coefficients, more than the ${outFeatures}×${inFeatures} layer's positions`,
      );
    }
    // the side file's positions, else those PEFT redraws
    const indices = (side === null ? null : await readFourierftIndices(side, m, spectrum.length)) ??
      peftFourierftPositions(outFeatures, inFeatures, spectrum.length, seed);
    modules.set(m, { outFeatures, inFeatures, spectrum, indices });
  }
  return modules;
}

/** Options of {@link saveAdapter}. */
export interface SaveOptions {
  /** Check the adapter against the base model's shapes first (as {@link LoadAdapterOptions.shapes}). */
  shapes?: ModelShapes;
}

/**
 * Validate `adapter` and write it to the directory `dir` (created, or replaced as a whole; see
 * the module doc).
 */
export async function saveAdapter(dir: string, adapter: Adapter, opts: SaveOptions = {}): Promise<void> {
  checkAdapter(adapter, dir, opts.shapes);
  if ((await Deno.stat(dir).catch(() => null))?.isFile) {
    throw new AdapterFileError(`${dir} exists and is not a directory`);
  }
  const tensors: Record<string, TensorData> = {};
  const side: Record<string, TensorData> = {};
  const layerShapes: Record<string, [number, number]> = {};
  for (const [m, mod] of adapter.modules) {
    const k = PEFT_KEY_PREFIX + m;
    switch (adapter.config.peftType) {
      case "SSH": {
        const s = mod as SSHModule;
        tensors[`${k}.ssh_spectrum`] = { dtype: "F32", shape: [s.spectrum.length], data: s.spectrum };
        tensors[`${k}.ssh_indices`] = { dtype: "I32", shape: [s.spectrum.length, 2], data: s.indices };
        layerShapes[m] = [s.outFeatures, s.inFeatures];
        break;
      }
      case "LORA": {
        const l = mod as LoraModule;
        tensors[`${k}.lora_A.weight`] = { dtype: "F32", shape: [l.r, l.inFeatures], data: l.a };
        tensors[`${k}.lora_B.weight`] = { dtype: "F32", shape: [l.outFeatures, l.r], data: l.b };
        break;
      }
      case "FOURIERFT": {
        const f = mod as FourierFTModule;
        tensors[`${k}.fourierft_spectrum`] = { dtype: "F32", shape: [f.spectrum.length], data: f.spectrum };
        if (f.indices) {
          side[`${k}.fourierft_indices`] = {
            dtype: "I32",
            shape: [2, f.spectrum.length],
            data: rowsThenCols(f.indices),
          };
        }
        layerShapes[m] = [f.outFeatures, f.inFeatures];
        break;
      }
    }
  }
  const withIndices = Object.keys(side).length;
  if (withIndices !== 0 && withIndices !== adapter.modules.size) {
    throw new AdapterFileError(`${dir}: FourierFT positions must be given for every module or for none`);
  }
  for (const [key, t] of adapter.saved) {
    tensors[PEFT_KEY_PREFIX + key] = { dtype: "F32", shape: t.shape, data: t.data };
  }
  const metadata: Record<string, string> = { format: "pt" };
  if (Object.keys(layerShapes).length > 0) metadata[LAYER_SHAPES_KEY] = JSON.stringify(layerShapes);
  if (adapter.labels) metadata[LABELS_KEY] = JSON.stringify(adapter.labels);
  if (adapter.problemType) metadata[PROBLEM_KEY] = adapter.problemType;
  await writeDirAtomic(dir, async (tmp) => {
    await writeSafetensors(join(tmp, ADAPTER_WEIGHTS_FILE), tensors, metadata);
    if (withIndices > 0) await writeSafetensors(join(tmp, FOURIERFT_INDICES_FILE), side, { format: "pt" });
    await writeFileAtomic(join(tmp, ADAPTER_CONFIG_FILE), adapterConfigToText(adapter.config));
  }, { keep: (name) => !ADAPTER_FILES.includes(name) });
}

/** Per-method tensor suffixes, to name a tensor of the wrong method. */
const SUFFIXES: Record<PeftType, string[]> = {
  SSH: ["ssh_spectrum", "ssh_indices"],
  LORA: ["lora_A.weight", "lora_B.weight"],
  FOURIERFT: ["fourierft_spectrum"],
};

const METHOD_NAMES: Record<PeftType, string> = { SSH: "an SSH", LORA: "a LoRA", FOURIERFT: "a FourierFT" };

/** The adapter's keys sorted into modules (with their tensor suffixes) and saved parameters. */
function groupKeys(file: SafetensorsFile, config: AdapterConfig) {
  const modules = new Map<string, Set<string>>();
  const saved: string[] = [];
  const own = SUFFIXES[config.peftType];
  for (const key of file.names) {
    if (!key.startsWith(PEFT_KEY_PREFIX)) {
      throw new AdapterFileError(`${file.path}: tensor "${key}" does not start with "${PEFT_KEY_PREFIX}"`);
    }
    const rest = key.slice(PEFT_KEY_PREFIX.length);
    const suffix = own.find((s) => rest.endsWith("." + s));
    if (suffix) {
      const m = rest.slice(0, -suffix.length - 1);
      if (!modules.has(m)) modules.set(m, new Set());
      modules.get(m)!.add(suffix);
      continue;
    }
    for (const [type, list] of Object.entries(SUFFIXES)) {
      if (list.some((s) => rest.endsWith("." + s))) {
        throw new AdapterFileError(
          `${file.path}: tensor "${key}" is ${METHOD_NAMES[type as PeftType]} tensor in ` +
            `${METHOD_NAMES[config.peftType]} adapter`,
        );
      }
    }
    saved.push(rest);
  }
  return { modules, saved };
}

function need(file: SafetensorsFile, module: string, present: Set<string>, suffix: string): string {
  if (!present.has(suffix)) {
    throw new AdapterFileError(`${file.path}: module "${module}" has no ${suffix} tensor`);
  }
  return `${PEFT_KEY_PREFIX}${module}.${suffix}`;
}

async function readSpectrum(
  file: SafetensorsFile,
  module: string,
  present: Set<string>,
  suffix: string,
): Promise<Float32Array> {
  const key = need(file, module, present, suffix);
  const shape = file.info(key).shape;
  if (shape.length !== 1) {
    throw new AdapterFileError(`${file.path}: "${key}" is [${shape}], expected a vector [n]`);
  }
  return await readFloat(file, key);
}

async function readFloat(file: SafetensorsFile, key: string): Promise<Float32Array> {
  const dtype = file.info(key).dtype;
  if (!FLOAT_DTYPES.includes(dtype)) {
    throw new AdapterFileError(
      `${file.path}: "${key}" is ${dtype}, expected a float dtype (${FLOAT_DTYPES.join(", ")})`,
    );
  }
  return await file.readF32(key);
}

/** An integer tensor (I32, or I64 within int32 range) as Int32Array. */
async function readIndices(file: SafetensorsFile, key: string): Promise<Int32Array> {
  const dtype = file.info(key).dtype;
  const data: TypedArray = await file.read(key);
  if (dtype === "I32") return data as Int32Array;
  if (dtype === "I64") {
    const src = data as BigInt64Array, out = new Int32Array(src.length);
    for (let i = 0; i < src.length; i++) {
      if (src[i] < -2147483648n || src[i] > 2147483647n) {
        throw new AdapterFileError(`${file.path}: "${key}" holds ${src[i]}, outside the int32 range`);
      }
      out[i] = Number(src[i]);
    }
    return out;
  }
  throw new AdapterFileError(`${file.path}: "${key}" is ${dtype}, expected I32 (or I64)`);
}

/** FourierFT positions of `module` from a side file ([2, n] rows then cols) as [n, 2] pairs, or null. */
async function readFourierftIndices(
  side: SafetensorsFile,
  module: string,
  n: number,
): Promise<Int32Array | null> {
  const key = [`${PEFT_KEY_PREFIX}${module}.fourierft_indices`, `${PEFT_KEY_PREFIX}${module}.indices`]
    .find((k) => side.has(k));
  if (!key) return null;
  const shape = side.info(key).shape;
  if (shape.length !== 2 || shape[0] !== 2 || shape[1] !== n) {
    throw new AdapterFileError(
      `${side.path}: "${key}" is [${shape}], expected [2, ${n}] (rows, then columns)`,
    );
  }
  const flat = await readIndices(side, key);
  const pairs = new Int32Array(2 * n);
  for (let k = 0; k < n; k++) {
    pairs[2 * k] = flat[k];
    pairs[2 * k + 1] = flat[n + k];
  }
  return pairs;
}

/** [n, 2] pairs → [2, n] (rows, then columns). */
function rowsThenCols(pairs: Int32Array): Int32Array {
  const n = pairs.length / 2, out = new Int32Array(2 * n);
  for (let k = 0; k < n; k++) {
    out[k] = pairs[2 * k];
    out[n + k] = pairs[2 * k + 1];
  }
  return out;
}

/** A JSON `__metadata__` entry: undefined when absent, null when it is not JSON. */
function jsonMetadata(file: SafetensorsFile, key: string): unknown {
  const text = file.metadata[key];
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The `hartley.labels` metadata: class names by id, or null when absent. */
function readLabels(file: SafetensorsFile): string[] | null {
  const json = jsonMetadata(file, LABELS_KEY);
  if (json === undefined) return null;
  if (!Array.isArray(json) || !json.every((n) => typeof n === "string")) {
    throw new AdapterFileError(`${file.path}: metadata "${LABELS_KEY}" must be a JSON array of class names`);
  }
  return json;
}

/** The `hartley.layer_shapes` metadata: module → [out, in], or null when absent. */
function readLayerShapes(file: SafetensorsFile): Record<string, [number, number]> | null {
  const json = jsonMetadata(file, LAYER_SHAPES_KEY);
  if (json === undefined) return null;
  const ok = typeof json === "object" && json !== null && !Array.isArray(json) &&
    Object.values(json).every((v) =>
      Array.isArray(v) && v.length === 2 && v.every((x) => Number.isSafeInteger(x) && x >= 1)
    );
  if (!ok) {
    throw new AdapterFileError(
      `${file.path}: metadata "${LAYER_SHAPES_KEY}" must map module paths to [out, in], got ${
        String(file.metadata[LAYER_SHAPES_KEY]).slice(0, 200)
      }`,
    );
  }
  return json as Record<string, [number, number]>;
}
