/**
 * The table of a Hugging Face `datasets` split, whatever its format: a Parquet file
 * (lib/io/parquet.ts), an Arrow IPC file (lib/io/arrow.ts; the `datasets` cache's
 * `NAME-train.arrow`), or a folder `Dataset.save_to_disk` wrote: its state.json lists its Arrow
 * shards (`_data_files`), read in that order as one table, rows numbered across them in errors. A
 * `DatasetDict.save_to_disk` folder (a dataset_dict.json and a folder per split) is refused, naming
 * its splits. A folder's columns and ClassLabel names are its first shard's (every shard holds the
 * same schema); its dataset_info.json, and state.json's format (`set_format`'s columns and type),
 * are not read: every column is, as the Arrow files hold it. {@link readTable} reads the rows;
 * {@link tableColumns} and {@link tableClassLabels} read the schema alone.
 *
 * ```ts
 * const table = await readTable("imdb/train"); // imdb = DatasetDict.save_to_disk's folder
 * table.classLabels.get("label"); // ["neg", "pos"]
 * ```
 * @module
 */
import { basename, dirname, join } from "node:path";
import { arrowClassLabels, arrowColumns, readArrow } from "./arrow.ts";
import { type DataTable, parquetClassLabels, parquetColumns, readParquet, TableError } from "./parquet.ts";

export type { DataTable };
export { TableError };

/** The format of a split's table: a Parquet file, or Arrow (an IPC file, or a save_to_disk folder of them). */
export type TableFormat = "parquet" | "arrow";

/** The files `Dataset.save_to_disk` and `DatasetDict.save_to_disk` write beside the data. */
const STATE = "state.json", DICT = "dataset_dict.json";

/**
 * The table format of `path` by its name (.parquet, .arrow) or, for a folder, by the files
 * `save_to_disk` writes there ({@link isSavedDataset}); null for anything else.
 */
export function tableFormatOf(path: string): TableFormat | null {
  if (/\.parquet$/i.test(path)) return "parquet";
  if (/\.arrow$/i.test(path) || isSavedDataset(path)) return "arrow";
  return null;
}

/**
 * Whether `path` is a folder `save_to_disk` wrote: a Dataset's (state.json) or a DatasetDict's
 * (dataset_dict.json); not, e.g., an image folder of class folders.
 */
export function isSavedDataset(path: string): boolean {
  return isFile(join(path, STATE)) || isFile(join(path, DICT));
}

/**
 * The folder the relative paths a split holds (its Image cells') are read from: a save_to_disk
 * folder itself, else the file's folder.
 */
export function tableFolder(path: string): string {
  return isSavedDataset(path) ? path : dirname(path);
}

/**
 * Read the split at `path` (see {@link DataTable}): a Parquet or Arrow file, or a save_to_disk
 * folder; `format` is {@link tableFormatOf}'s unless given.
 */
export async function readTable(path: string, format?: TableFormat): Promise<DataTable> {
  if (formatOf(path, format) === "parquet") return await readParquet(path);
  const shards = await savedShards(path);
  return shards === null ? await readArrow(path) : await readShards(path, shards);
}

/** The column names of the split at `path` ({@link readTable}), from its schema alone. */
export async function tableColumns(path: string, format?: TableFormat): Promise<string[]> {
  if (formatOf(path, format) === "parquet") return await parquetColumns(path);
  return await arrowColumns((await savedShards(path))?.[0] ?? path);
}

/** The ClassLabel names of the split at `path` ({@link DataTable.classLabels}), from its schema alone. */
export async function tableClassLabels(path: string, format?: TableFormat): Promise<Map<string, string[]>> {
  if (formatOf(path, format) === "parquet") return await parquetClassLabels(path);
  return await arrowClassLabels((await savedShards(path))?.[0] ?? path);
}

/** `format`, else the format of `path` by {@link tableFormatOf}; a path of neither is refused. */
function formatOf(path: string, format: TableFormat | undefined): TableFormat {
  const found = format ?? tableFormatOf(path);
  if (found) return found;
  throw new TableError(`${path}: not a .parquet or .arrow file, nor a folder that save_to_disk wrote`);
}

/**
 * The shards of the save_to_disk folder `path`, in the order its state.json lists them; null when
 * `path` is no folder (an Arrow file). A folder without state.json is refused: a DatasetDict's
 * naming its splits.
 */
async function savedShards(path: string): Promise<string[] | null> {
  if (!(await isFolder(path))) return null;
  const state = await readJson(join(path, STATE));
  if (state === undefined) throw await notASplit(path);
  const files = (state as { _data_files?: unknown } | null)?._data_files;
  const named = (f: unknown) => typeof (f as { filename?: unknown } | null)?.filename === "string";
  if (!Array.isArray(files) || files.length === 0 || !files.every(named)) {
    throw new TableError(
      `${join(path, STATE)}: no shards: expected "_data_files", a list of {"filename": …}, as save_to_disk ` +
        `writes it`,
    );
  }
  return files.map((f: { filename: string }) => join(path, f.filename));
}

/** The error for the folder `dir` without a state.json: a DatasetDict's (naming its splits), or another. */
async function notASplit(dir: string): Promise<TableError> {
  const dict = await readJson(join(dir, DICT));
  if (dict === undefined) {
    return new TableError(`${dir}: a folder without ${STATE}: not a split saved by Dataset.save_to_disk`);
  }
  const listed = (dict as { splits?: unknown } | null)?.splits;
  const splits = Array.isArray(listed) ? listed.map(String) : [];
  return new TableError(
    `${dir}: a DatasetDict (the folder DatasetDict.save_to_disk writes, of ` +
      (splits.length > 0 ? `splits ${splits.join(", ")}` : "splits") +
      `): give one split's folder, e.g. ${join(dir, splits[0] ?? "train")}`,
  );
}

/** The Arrow `shards` of the save_to_disk folder `dir`, read in order as one table. */
async function readShards(dir: string, shards: string[]): Promise<DataTable> {
  const tables: DataTable[] = [];
  let before = 0; // rows of the shards read
  for (const shard of shards) {
    const first = before;
    const table = await readArrow(shard, (row) => `${dir}: row ${first + row + 1} (${basename(shard)})`);
    const columns = tables[0]?.columns ?? table.columns;
    if (table.columns.join("\0") !== columns.join("\0")) {
      throw new TableError(
        `${shard}: the columns ${table.columns.join(", ")} are not those of ${basename(shards[0])} ` +
          `(${columns.join(", ")})`,
      );
    }
    tables.push(table);
    before += table.rows.length;
  }
  return {
    rows: tables.flatMap((t) => t.rows),
    columns: tables[0].columns,
    classLabels: tables[0].classLabels,
  };
}

/** Whether `path` is a folder (a link to one too); false where nothing is there. */
async function isFolder(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw new TableError(`${path}: cannot read: ${(e as Error).message}`);
  }
}

/** Whether `path` is a file; false where it cannot be looked at. */
function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** The JSON value of the file `path`; undefined where there is none. */
async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new TableError(`${path}: cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TableError(`${path}: malformed JSON (${(e as Error).message})`);
  }
}
