/**
 * Parquet tables (the files Hugging Face `datasets` writes for a split, e.g.
 * `train-00000-of-00001.parquet`), read whole into rows of plain values through the pinned npm
 * package `hyparquet` (pure JavaScript; this module is the only one that imports it). Snappy is
 * built in; GZIP, Brotli and Zstandard pages are inflated with `node:zlib`. The `huggingface`
 * schema metadata, when present, gives the names of ClassLabel columns.
 *
 * What every table of a split shares, whatever its format, is here too: {@link DataTable},
 * {@link TableError}, the {@link plainValue} rule and the ClassLabel names of the `huggingface`
 * metadata ({@link featureClassLabels}), which lib/io/arrow.ts reads in Arrow files as well.
 * @module
 */
import {
  asyncBufferFromFile,
  type Compressors,
  type FileMetaData,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from "hyparquet";
import { brotliDecompressSync, gunzipSync, zstdDecompressSync } from "node:zlib";

/** A `datasets` split's rows (a Parquet or Arrow file, a save_to_disk folder) and what its metadata says. */
export interface DataTable {
  /** Every row, as column name → value (strings, numbers, booleans, null; INT64 as numbers). */
  rows: Record<string, unknown>[];
  /** Top-level column names in schema order. */
  columns: string[];
  /** Names of the ids of each ClassLabel column (from `datasets`' features metadata). */
  classLabels: Map<string, string[]>;
}

/** A table of a split that cannot be read: {@link ParquetError}, lib/io/arrow.ts's ArrowError, or a folder's. */
export class TableError extends Error {
  /** "TableError", or the subclass's name. */
  override name = "TableError";
}

/** A Parquet file that cannot be read (not Parquet, an unsupported codec, a value out of range). */
export class ParquetError extends TableError {
  /** Always "ParquetError". */
  override name = "ParquetError";
}

const COMPRESSORS: Compressors = {
  GZIP: (input) => new Uint8Array(gunzipSync(input)),
  BROTLI: (input) => new Uint8Array(brotliDecompressSync(input)),
  ZSTD: (input) => new Uint8Array(zstdDecompressSync(input)),
};

/** The column names of the Parquet file at `path`, from its footer alone. */
export async function parquetColumns(path: string): Promise<string[]> {
  return topColumns(await footer(path));
}

/** The ClassLabel names of the Parquet file at `path` ({@link DataTable.classLabels}), from its footer alone. */
export async function parquetClassLabels(path: string): Promise<Map<string, string[]>> {
  return featureClassLabels(hfMetadata(await footer(path)));
}

/** The footer metadata of the Parquet file at `path`. */
async function footer(path: string): Promise<FileMetaData> {
  try {
    return await parquetMetadataAsync(await asyncBufferFromFile(path));
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") throw new ParquetError(`${path}: file not found`);
    throw new ParquetError(`${path}: cannot read as Parquet: ${(e as Error).message}`);
  }
}

/** Read the Parquet file at `path` (see {@link DataTable}). */
export async function readParquet(path: string): Promise<DataTable> {
  let table: { rows: Record<string, unknown>[]; columns: string[]; meta: string | undefined };
  try {
    const file = await asyncBufferFromFile(path);
    const metadata = await parquetMetadataAsync(file);
    // utf8 false: only columns annotated as strings are decoded to text, binary stays bytes
    const rows = await parquetReadObjects({ file, metadata, compressors: COMPRESSORS, utf8: false });
    const columns = topColumns(metadata);
    table = { rows, columns, meta: hfMetadata(metadata) };
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") throw new ParquetError(`${path}: file not found`);
    throw new ParquetError(`${path}: cannot read as Parquet: ${(e as Error).message}`);
  }
  const rows = table.rows.map((row, i) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(row)) {
      out[k] = plainValue(v, () => `${path}: row ${i + 1}, column "${k}"`, ParquetError);
    }
    return out;
  });
  return { rows, columns: table.columns, classLabels: featureClassLabels(table.meta) };
}

/** The `huggingface` schema metadata entry `datasets` writes, if any. */
function hfMetadata(metadata: FileMetaData): string | undefined {
  return metadata.key_value_metadata?.find((kv) => kv.key === "huggingface")?.value;
}

/** The top-level column names (a struct column counts once, by its own name). */
function topColumns(metadata: FileMetaData): string[] {
  return parquetSchema(metadata).children.map((c) => c.element.name);
}

/**
 * A value as JSON would hold it: INT64 (bigint) as a number, when it is one exactly (in lists and
 * structs too); `where` names the cell in the error, an `error` (default {@link TableError}).
 */
export function plainValue(
  v: unknown,
  where: () => string,
  error: new (message: string) => TableError = TableError,
): unknown {
  if (Array.isArray(v)) return v.map((x) => plainValue(x, where, error));
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainValue(x, where, error)]));
  }
  if (typeof v !== "bigint") return v;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new error(`${where()}: ${v} does not fit a safe integer`);
  return n;
}

/**
 * ClassLabel names by column, from `datasets`' {"info": {"features": …}} schema metadata (`json`,
 * the `huggingface` entry of a Parquet or Arrow schema): a ClassLabel column's, or a list column's
 * whose items are ClassLabels (multi-label data).
 */
export function featureClassLabels(json: string | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (!json) return out;
  let features: unknown;
  try {
    features = JSON.parse(json)?.info?.features;
  } catch {
    return out; // metadata of another writer: no names
  }
  if (typeof features !== "object" || features === null) return out;
  type Feature = { _type?: unknown; names?: unknown; feature?: unknown } | Feature[] | null;
  for (const [name, f] of Object.entries(features as Record<string, Feature>)) {
    // Sequence(ClassLabel) / List(ClassLabel) / LargeList(ClassLabel), or the older [ClassLabel]
    const items = Array.isArray(f)
      ? f[0]
      : f?._type === "Sequence" || f?._type === "List" || f?._type === "LargeList"
      ? f.feature as Feature
      : f;
    const label = items as { _type?: unknown; names?: unknown } | null;
    if (label?._type === "ClassLabel" && Array.isArray(label.names)) out.set(name, label.names.map(String));
  }
  return out;
}
