/**
 * Reading safetensors files (header first, then each tensor's bytes on demand, so a large
 * checkpoint is never held twice) and sharded checkpoints (`model.safetensors.index.json`).
 * Writing them is lib/io/safetensors_write.ts's.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON (`{name: {dtype, shape,
 * data_offsets: [begin, end]}}` with offsets relative to the data start, and an optional
 * `__metadata__` string map), then the data: the tensors' bytes one after another, from the start
 * of the data to the end of the file (the reference library's rule: a gap or trailing bytes are
 * refused). Every error names the file, and the tensor where one is at fault.
 * {@link openCheckpoint} reads a checkpoint under the names transformers loads it with (see
 * `transformersName`).
 * @module
 */
import { dirname, join } from "node:path";
import { type Dtype, DTYPES, isDtype, toFloat32, type TypedArray } from "./dtype.ts";

/** A malformed or inconsistent safetensors file, index or tensor. */
export class SafetensorsError extends Error {
  /** Always "SafetensorsError". */
  override name = "SafetensorsError";
}

/** Dtype and shape of one stored tensor. */
export interface TensorInfo {
  /** Element type. */
  dtype: Dtype;
  /** Dimensions, outermost first. */
  shape: number[];
  /** Bytes of data: product of the shape times the dtype size. */
  byteLength: number;
}

/** Read access to named tensors, from one file or from the shards of a checkpoint. */
export interface TensorSource {
  /** Where the tensors come from (the file, or a sharded checkpoint's index). */
  readonly path: string;
  /** Tensor names: a file's in data order, a sharded checkpoint's in index order. */
  readonly names: readonly string[];
  /** The `__metadata__` string map (a sharded checkpoint's index `metadata`, stringified). */
  readonly metadata: Readonly<Record<string, string>>;
  /**
   * Tensors read under another name than the one they are stored under: name → stored name
   * (see {@link openCheckpoint}); absent or empty when every name is the stored one.
   */
  readonly renamed?: ReadonlyMap<string, string>;
  /** Whether a tensor named `name` is there. */
  has(name: string): boolean;
  /** Dtype and shape of `name`; throws naming the source when it is absent. */
  info(name: string): TensorInfo;
  /** The tensor in its own dtype (F16/BF16 as raw bits in a Uint16Array, I64 as BigInt64Array). */
  read(name: string): Promise<TypedArray>;
  /** The tensor's values as float32 (f16/bf16 exact, f64 rounded, integers converted). */
  readF32(name: string): Promise<Float32Array>;
}

/** The largest header accepted (as the reference library: 100 MB). */
const MAX_HEADER = 100_000_000;

/** Dtypes the format defines that this project does not handle (named in errors). */
const KNOWN_UNSUPPORTED = [
  "U16",
  "U32",
  "U64",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "C64",
];

interface Entry extends TensorInfo {
  /** The name it is stored under. */
  name: string;
  begin: number;
  end: number;
}

/** Options of {@link SafetensorsFile.open} and {@link ShardedCheckpoint.open}. */
export interface OpenOptions {
  /** Read each tensor under the name transformers loads it with (`transformersName`). */
  transformersNames?: boolean;
}

/** One safetensors file, header parsed and validated; tensor data is read on demand. */
export class SafetensorsFile implements TensorSource {
  readonly names: readonly string[];
  /** The entries by the name they are read under. */
  readonly #entries: Map<string, Entry>;

  private constructor(
    readonly path: string,
    readonly metadata: Readonly<Record<string, string>>,
    /** Byte offset of the data region in the file (8 + header length). */
    readonly dataStart: number,
    /** The entries in data order. */
    entries: readonly Entry[],
    readonly renamed: ReadonlyMap<string, string>,
  ) {
    const names = readNames(renamed);
    const nameOf = (e: Entry) => names.get(e.name) ?? e.name;
    this.#entries = new Map(entries.map((e) => [nameOf(e), e]));
    this.names = entries.map(nameOf);
  }

  /** Open `path`: read and validate the header (no tensor data is read). */
  static async open(path: string, opts: OpenOptions = {}): Promise<SafetensorsFile> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      if (size < 8) fail(path, `${size} bytes is too short for a safetensors file (no 8-byte header length)`);
      const length = new DataView((await readExactly(file, 8, path, "the header length")).buffer)
        .getBigUint64(0, true);
      if (length > BigInt(MAX_HEADER)) {
        if (await isLfsPointer(path, size)) {
          fail(
            path,
            `is a Git LFS pointer, not the file itself: fetch it (git lfs pull, in its clone)`,
          );
        }
        fail(path, `header length ${length} is larger than the ${MAX_HEADER}-byte limit`);
      }
      const n = Number(length);
      if (8 + n > size) {
        fail(
          path,
          `header length ${n} runs past the end of the file (${size} bytes): truncated or not safetensors`,
        );
      }
      const header = parseHeader(path, await readExactly(file, n, path, "the header"));
      const dataStart = 8 + n;
      const entries = checkEntries(path, header.entries, size - dataStart);
      const renamed = opts.transformersNames ? renamesOf(path, entries.map((e) => e.name)) : new Map();
      return new SafetensorsFile(path, header.metadata, dataStart, entries, renamed);
    } finally {
      file.close();
    }
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  info(name: string): TensorInfo {
    const e = this.#entry(name);
    return { dtype: e.dtype, shape: [...e.shape], byteLength: e.byteLength };
  }

  async read(name: string): Promise<TypedArray> {
    const e = this.#entry(name);
    const file = await Deno.open(this.path, { read: true });
    try {
      await file.seek(this.dataStart + e.begin, Deno.SeekMode.Start);
      const bytes = await readExactly(file, e.byteLength, this.path, `tensor "${e.name}"`);
      return new DTYPES[e.dtype].array(bytes.buffer as ArrayBuffer, 0, e.byteLength / DTYPES[e.dtype].size);
    } finally {
      file.close();
    }
  }

  async readF32(name: string): Promise<Float32Array> {
    return toFloat32(this.#entry(name).dtype, await this.read(name));
  }

  #entry(name: string): Entry {
    const e = this.#entries.get(name);
    if (!e) throw new SafetensorsError(`${this.path}: no tensor "${name}" ${listSome(this.names)}`);
    return e;
  }
}

/** Open one safetensors file (header only; see {@link SafetensorsFile}). */
export function openSafetensors(path: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(path);
}

/** The tensors of a sharded checkpoint, found through its `*.safetensors.index.json`. */
export class ShardedCheckpoint implements TensorSource {
  readonly names: readonly string[];

  private constructor(
    /** The index file. */
    readonly path: string,
    readonly metadata: Readonly<Record<string, string>>,
    /** The shard of each tensor, by the name it is read under. */
    private readonly shardOf: Map<string, SafetensorsFile>,
    readonly renamed: ReadonlyMap<string, string>,
  ) {
    this.names = [...shardOf.keys()];
  }

  /** Read the index at `indexPath`, open every shard it names and check each tensor is there. */
  static async open(indexPath: string, opts: OpenOptions = {}): Promise<ShardedCheckpoint> {
    let index: unknown;
    try {
      index = JSON.parse(await Deno.readTextFile(indexPath));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw e;
      fail(indexPath, `invalid JSON: ${(e as Error).message}`);
    }
    const weightMap = isObject(index) ? index.weight_map : undefined;
    if (!isObject(weightMap)) fail(indexPath, `no "weight_map" object mapping tensor names to shard files`);
    const shards = new Map<string, SafetensorsFile>();
    const shardOf = new Map<string, SafetensorsFile>();
    for (const [name, file] of Object.entries(weightMap)) {
      if (typeof file !== "string" || file === "" || file.includes("/") || file.includes("\\")) {
        fail(
          indexPath,
          `tensor "${name}" maps to ${JSON.stringify(file)}, expected a file name in the same folder`,
        );
      }
      let shard = shards.get(file);
      if (!shard) {
        const shardPath = join(dirname(indexPath), file);
        try {
          shard = await SafetensorsFile.open(shardPath);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) {
            fail(indexPath, `shard "${file}" (of tensor "${name}") not found`);
          }
          throw e;
        }
        shards.set(file, shard);
      }
      if (!shard.has(name)) {
        fail(indexPath, `tensor "${name}" is mapped to shard "${file}", which does not contain it`);
      }
      shardOf.set(name, shard);
    }
    const meta = isObject(index) && isObject(index.metadata) ? index.metadata : {};
    const metadata = Object.fromEntries(
      Object.entries(meta).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
    );
    const renamed = opts.transformersNames ? renamesOf(indexPath, [...shardOf.keys()]) : new Map();
    const names = readNames(renamed);
    const byName = new Map([...shardOf].map(([stored, shard]) => [names.get(stored) ?? stored, shard]));
    return new ShardedCheckpoint(indexPath, metadata, byName, renamed);
  }

  has(name: string): boolean {
    return this.shardOf.has(name);
  }

  info(name: string): TensorInfo {
    return this.shard(name).info(this.#stored(name));
  }

  read(name: string): Promise<TypedArray> {
    return this.shard(name).read(this.#stored(name));
  }

  readF32(name: string): Promise<Float32Array> {
    return this.shard(name).readF32(this.#stored(name));
  }

  #stored(name: string): string {
    return this.renamed.get(name) ?? name;
  }

  /** The shard file holding `name`. */
  fileOf(name: string): string {
    return this.shard(name).path;
  }

  private shard(name: string): SafetensorsFile {
    const s = this.shardOf.get(name);
    if (!s) throw new SafetensorsError(`${this.path}: no tensor "${name}" ${listSome(this.names)}`);
    return s;
  }
}

/**
 * Open a checkpoint: a `.safetensors` file, a `.safetensors.index.json`, or a folder holding
 * `<base>.safetensors` or else `<base>.safetensors.index.json` (sharded), the order transformers
 * looks in. Its tensors are read under the names transformers loads them with (see
 * `transformersName`; `renamed` lists those read under another name than stored). A folder
 * with weights in another format only (`pytorch_model.bin`, …) is an error saying how to convert them.
 * @param base file stem looked for in a folder: "model", or e.g. "adapter_model".
 */
export async function openCheckpoint(path: string, base = "model"): Promise<TensorSource> {
  const stat = await Deno.stat(path);
  const opts = { transformersNames: true };
  if (stat.isFile) {
    return path.endsWith(".index.json")
      ? ShardedCheckpoint.open(path, opts)
      : SafetensorsFile.open(path, opts);
  }
  const index = join(path, `${base}.safetensors.index.json`), single = join(path, `${base}.safetensors`);
  if (await exists(single)) return SafetensorsFile.open(single, opts);
  if (await exists(index)) return ShardedCheckpoint.open(index, opts);
  throw new SafetensorsError(
    `${path}: neither ${base}.safetensors nor ${base}.safetensors.index.json is there` +
      (base === "model" ? await otherFormatHint(path) : ""),
  );
}

/**
 * Weights transformers reads that this project does not (PyTorch pickles, TensorFlow, Flax),
 * with the `from_pretrained` argument that reads each.
 */
const OTHER_FORMATS: readonly [file: string, kind: string, argument: string][] = [
  ["pytorch_model.bin", "PyTorch", ""],
  ["pytorch_model.bin.index.json", "sharded PyTorch", ""],
  ["tf_model.h5", "TensorFlow", ", from_tf=True"],
  ["tf_model.h5.index.json", "sharded TensorFlow", ", from_tf=True"],
  ["flax_model.msgpack", "Flax", ", from_flax=True"],
  ["flax_model.msgpack.index.json", "sharded Flax", ", from_flax=True"],
];

/**
 * For the model folder `dir` without safetensors: what it holds instead and how transformers
 * converts it (its class from config.json's architectures), or "".
 */
async function otherFormatHint(dir: string): Promise<string> {
  for (const [file, kind, argument] of OTHER_FORMATS) {
    if (!(await exists(join(dir, file)))) continue;
    const config = await Deno.readTextFile(join(dir, "config.json")).then(JSON.parse).catch(() => null);
    const arch = typeof config?.architectures?.[0] === "string" ? config.architectures[0] : "AutoModel";
    return `; it has ${file} (${kind} weights), and only safetensors are read: transformers converts ` +
      `them with ${arch}.from_pretrained(dir${argument}).save_pretrained(dir, safe_serialization=True)`;
  }
  return "";
}

/**
 * The name transformers loads a checkpoint tensor under: its own, except LayerNorm weights stored
 * as `gamma` / `beta` (BERTs converted from TensorFlow, such as bert-base-uncased), which its
 * legacy renames (`LayerNorm.gamma` → `LayerNorm.weight`, `LayerNorm.beta` → `LayerNorm.bias`) read
 * under the current names.
 */
function transformersName(name: string): string {
  return name.replace(/LayerNorm\.gamma$/, "LayerNorm.weight").replace(/LayerNorm\.beta$/, "LayerNorm.bias");
}

/**
 * The `stored` names that `transformersName` renames, by their new name. A file holding a
 * tensor under both names is an error naming both.
 */
function renamesOf(path: string, stored: readonly string[]): Map<string, string> {
  const all = new Set(stored), renamed = new Map<string, string>();
  for (const name of stored) {
    const to = transformersName(name);
    if (to === name) continue;
    if (all.has(to)) fail(path, `holds both "${name}" and "${to}", which transformers reads as one tensor`);
    renamed.set(to, name);
  }
  return renamed;
}

/** Each renamed stored name's new name (`renamed` inverted). */
function readNames(renamed: ReadonlyMap<string, string>): Map<string, string> {
  return new Map([...renamed].map(([name, stored]) => [stored, name]));
}

/** Whether the file at `path` (`size` bytes) is a Git LFS pointer (a clone made without git-lfs). */
async function isLfsPointer(path: string, size: number): Promise<boolean> {
  // the spec keeps pointers under 1024 bytes
  return size < 1024 &&
    (await Deno.readTextFile(path)).startsWith("version https://git-lfs.github.com/spec/");
}

/** The dtypes read and written, for errors. */
export const SUPPORTED = `(supported: ${Object.keys(DTYPES).join(", ")})`;

function parseHeader(
  path: string,
  bytes: Uint8Array,
): { metadata: Record<string, string>; entries: Entry[] } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    fail(path, "header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) fail(path, "header is not a JSON object");
  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, v] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isObject(v) || Object.values(v).some((x) => typeof x !== "string")) {
        fail(path, `"__metadata__" must map names to strings, got ${JSON.stringify(v).slice(0, 200)}`);
      }
      metadata = v as Record<string, string>;
      continue;
    }
    if (!isObject(v)) fail(path, `tensor "${name}": entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = v;
    if (!isDtype(dtype)) {
      const what = typeof dtype === "string" && KNOWN_UNSUPPORTED.includes(dtype) ? "unsupported" : "unknown";
      fail(path, `tensor "${name}": ${what} dtype ${JSON.stringify(dtype)} ${SUPPORTED}`);
    }
    const dims = checkShape(path, name, shape);
    if (
      !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((x) =>
        Number.isSafeInteger(x) && x >= 0
      ) ||
      offsets[1] < offsets[0]
    ) {
      fail(
        path,
        `tensor "${name}": data_offsets ${JSON.stringify(offsets)} must be [begin, end] with 0 ≤ begin ≤ end`,
      );
    }
    const byteLength = dims.reduce((a, b) => a * b, 1) * DTYPES[dtype].size;
    const [begin, end] = offsets as number[];
    if (end - begin !== byteLength) {
      fail(
        path,
        `tensor "${name}": shape [${dims}] of ${dtype} needs ${byteLength} bytes ` +
          `but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: dims, byteLength, begin, end });
  }
  return { metadata, entries };
}

/** `shape` as a list of dimensions; a SafetensorsError naming `path` and tensor `name` unless it is one. */
export function checkShape(path: string, name: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(path, `tensor "${name}": shape ${JSON.stringify(shape)} must be a list of non-negative integers`);
  }
  const n = shape.reduce((a: number, b: number) => a * b, 1);
  if (!Number.isSafeInteger(n * 8)) fail(path, `tensor "${name}": shape [${shape}] is too large`);
  return [...shape];
}

/**
 * Check offsets against the data size and each other, as the reference library does: in offset
 * order, each tensor's bytes begin where the previous one's end, from 0 to the end of the data.
 * The entries in that order.
 */
function checkEntries(path: string, entries: Entry[], dataSize: number): Entry[] {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: Entry | undefined, end = 0;
  for (const e of sorted) {
    if (e.end > dataSize) {
      fail(
        path,
        `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] run past the end of the data ` +
          `(${dataSize} bytes): file truncated?`,
      );
    }
    if (prev && e.begin < end) {
      fail(
        path,
        `tensors "${prev.name}" [${prev.begin}, ${prev.end}] and "${e.name}" [${e.begin}, ${e.end}] overlap`,
      );
    }
    if (e.begin > end) {
      fail(
        path,
        `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] leave bytes ${end} to ${e.begin} ` +
          `of the data unused (each tensor begins where the one before it ends)`,
      );
    }
    prev = e;
    end = e.end;
  }
  if (end !== dataSize) {
    fail(
      path,
      `the tensors' data ends at byte ${end} of ${dataSize}: ${dataSize - end} bytes after it belong to none`,
    );
  }
  return sorted;
}

async function readExactly(file: Deno.FsFile, n: number, path: string, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const k = await file.read(buf.subarray(got));
    if (k === null) fail(path, `end of file while reading ${what} (${got} of ${n} bytes): file truncated?`);
    got += k;
  }
  return buf;
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function listSome(names: readonly string[]): string {
  if (names.length === 0) return "(it holds no tensors)";
  const shown = names.slice(0, 5).map((n) => `"${n}"`).join(", ");
  return `(${names.length} tensors: ${shown}${names.length > 5 ? ", …" : ""})`;
}

/** Throw a SafetensorsError naming the file. */
export function fail(path: string, msg: string): never {
  throw new SafetensorsError(`${path}: ${msg}`);
}
