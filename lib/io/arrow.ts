/**
 * Arrow IPC files as Hugging Face `datasets` writes them: the shards of `Dataset.save_to_disk`
 * (`data-00000-of-00001.arrow`) and the cache's `NAME-train.arrow`, in the IPC stream format (the
 * IPC file format is read too), read whole into rows of plain values as lib/io/parquet.ts reads a
 * Parquet split: the same {@link DataTable}, the same values for the same data (64-bit integers by
 * {@link plainValue}'s rule, lists as arrays, structs as plain objects, binary as Uint8Array,
 * dates and timestamps as Date) and the ClassLabel names of the same `huggingface` schema
 * metadata. Read through the pinned npm package `@uwdata/flechette` (pure JavaScript; this module
 * is the only one that imports it).
 * @module
 */
import { type DataType, type Schema, type Table, tableFromIPC, Type } from "@uwdata/flechette";
import { type DataTable, featureClassLabels, plainValue, TableError } from "./parquet.ts";
import { readFailure, readFileBytes } from "./paths.ts";

/** An Arrow file that cannot be read (not Arrow IPC, a column without plain values, a value out of range). */
export class ArrowError extends TableError {
  /** Always "ArrowError". */
  override name = "ArrowError";
}

/** How errors name a row of a table, by its 0-based index. */
export type RowName = (row: number) => string;

/**
 * Read the Arrow IPC file at `path` (see {@link DataTable}). Errors name a row by `rowName`:
 * `PATH: row N` unless a caller names rows otherwise (a save_to_disk folder numbers them across
 * its shards).
 */
export async function readArrow(
  path: string,
  rowName: RowName = (row) => `${path}: row ${row + 1}`,
): Promise<DataTable> {
  const bytes = await readFileBytes(path, (message) => new ArrowError(message));
  checkMagic(path, bytes);
  // 64-bit integers as bigint, so that plainValue refuses those a number does not hold exactly
  const table = decode(path, () => tableFromIPC(bytes, { useBigInt: true, useDate: true }));
  const { fields } = table.schema;
  const converters = fields.map((f) => converter(f.type, path, f.name));
  const rows = Array.from({ length: table.numRows }, (): Record<string, unknown> => ({}));
  fields.forEach(({ name }, c) => {
    let row = 0;
    for (const v of table.getChildAt(c)) {
      const at = row++;
      rows[at][name] = converters[c](v, () => `${rowName(at)}, column "${name}"`);
    }
  });
  return { rows, columns: fields.map((f) => f.name), classLabels: classLabelsOf(table.schema) };
}

/** The column names of the Arrow file at `path`, from its schema alone. */
export async function arrowColumns(path: string): Promise<string[]> {
  return (await schemaOf(path)).fields.map((f) => f.name);
}

/** The ClassLabel names of the Arrow file at `path` ({@link DataTable.classLabels}), from its schema alone. */
export async function arrowClassLabels(path: string): Promise<Map<string, string[]>> {
  return classLabelsOf(await schemaOf(path));
}

/** The IPC file format's leading magic, "ARROW1" (padded to 8 bytes before the first message). */
const FILE_MAGIC = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31];

/** Whether `bytes` start as the IPC file format does. */
function isFileFormat(bytes: Uint8Array): boolean {
  return FILE_MAGIC.every((b, i) => bytes[i] === b);
}

/** Whether `bytes` start with a stream message's continuation marker (0xFFFFFFFF, Arrow 0.15 and later). */
function isStreamMessage(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && bytes[0] === 0xff && bytes[1] === 0xff && bytes[2] === 0xff &&
    bytes[3] === 0xff;
}

/** Refuses a file that is neither IPC format (the bytes it starts with, `head`). */
function checkMagic(path: string, head: Uint8Array): void {
  if (!isFileFormat(head) && !isStreamMessage(head)) {
    throw new ArrowError(
      `${path}: not an Arrow file (neither the IPC stream format \`datasets\` writes, starting 0xFFFFFFFF, ` +
        `nor the IPC file format, starting "ARROW1")`,
    );
  }
}

/** The table `read` decodes, with the decoder's errors, and a table without columns, as ArrowErrors. */
function decode(path: string, read: () => Table): Table {
  let table: Table;
  try {
    table = read();
  } catch (e) {
    throw new ArrowError(`${path}: cannot read as Arrow: ${(e as Error).message}`);
  }
  if (table.schema.fields.length === 0) {
    throw new ArrowError(`${path}: no columns (an Arrow file without a schema, or cut short)`);
  }
  return table;
}

/** The ArrowError of a file that cannot be opened or read (`e`, what was thrown). */
function unreadable(path: string, e: unknown): ArrowError {
  return new ArrowError(readFailure(path, e));
}

/** The ClassLabel names of the `huggingface` entry of `schema`'s metadata. */
function classLabelsOf(schema: Schema): Map<string, string[]> {
  return featureClassLabels(schema.metadata?.get("huggingface"));
}

/** The end-of-stream marker: a continuation and a zero length. */
const END_OF_STREAM = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/**
 * The schema of the Arrow file at `path`, from its first message alone (a stream's, or the one after
 * the file format's magic), decoded as a stream of that message without record batches.
 */
async function schemaOf(path: string): Promise<Schema> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw unreadable(path, e);
  }
  try {
    let start = 0, head = await readRange(file, path, 0, 8);
    checkMagic(path, head);
    if (isFileFormat(head)) head = await readRange(file, path, start = 8, 8);
    if (!isStreamMessage(head)) throw new ArrowError(`${path}: cannot read as Arrow: no schema message`);
    const length = new DataView(head.buffer, head.byteOffset).getInt32(4, true);
    const message = await readRange(file, path, start + 8, length);
    if (message.length < length) {
      throw new ArrowError(`${path}: cannot read as Arrow: its schema is cut short`);
    }
    const stream = new Uint8Array(head.length + message.length + END_OF_STREAM.length);
    stream.set(head);
    stream.set(message, head.length);
    stream.set(END_OF_STREAM, head.length + message.length);
    return decode(path, () => tableFromIPC(stream)).schema;
  } finally {
    file.close();
  }
}

/** Up to `length` bytes of `file` from `offset` (fewer where the file ends before). */
async function readRange(
  file: Deno.FsFile,
  path: string,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(Math.max(0, length));
  let got = 0;
  try {
    await file.seek(offset, Deno.SeekMode.Start);
    while (got < out.length) {
      const n = await file.read(out.subarray(got));
      if (n === null) break;
      got += n;
    }
  } catch (e) {
    throw unreadable(path, e);
  }
  return out.subarray(0, got);
}

/** Turns a decoded value of a column into a plain value; `where` names its cell in errors. */
type Converter = (value: unknown, where: () => string) => unknown;

/**
 * The {@link Converter} of values of Arrow `type` (column `column` of `path`): lists (the decoder's
 * typed arrays too) as arrays, structs as objects, dictionary and run-end encoded values as their
 * values' type, others by {@link plainValue}. Maps, unions and intervals are refused, naming the
 * column.
 */
function converter(type: DataType, path: string, column: string): Converter {
  switch (type.typeId) {
    case Type.List:
    case Type.LargeList:
    case Type.FixedSizeList:
    case Type.ListView:
    case Type.LargeListView: {
      const item = converter(type.children[0].type, path, column);
      return (v, where) => v === null ? null : Array.from(v as ArrayLike<unknown>, (x) => item(x, where));
    }
    case Type.Struct: {
      const fields = type.children.map((f) => [f.name, converter(f.type, path, column)] as const);
      return (v, where) => {
        if (v === null) return null;
        const struct = v as Record<string, unknown>;
        return Object.fromEntries(fields.map(([name, convert]) => [name, convert(struct[name], where)]));
      };
    }
    case Type.Dictionary:
      return converter(type.dictionary, path, column);
    case Type.RunEndEncoded:
      return converter(type.children[1].type, path, column);
    case Type.Map:
    case Type.Union:
    case Type.Interval:
      throw new ArrowError(
        `${path}: column "${column}" holds Arrow ${typeName(type.typeId)} values, which are not read as ` +
          `plain values (a list, struct, string, number, boolean, binary or date column is)`,
      );
    default:
      return (v, where) => plainValue(v, where, ArrowError);
  }
}

/** The name of an Arrow type id ("Map" for 17). */
function typeName(typeId: number): string {
  return Object.entries(Type).find(([, id]) => id === typeId)?.[0] ?? `type ${typeId}`;
}
