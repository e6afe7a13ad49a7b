/**
 * Reading data files: labelled text for classification (JSONL or a JSON array of objects, CSV/TSV
 * with a header, or a `datasets` split: a Parquet or Arrow file or a save_to_disk folder
 * (lib/io/data_table.ts), whose ClassLabel names name the ids), unlabelled texts (the same
 * formats, or a .txt file of lines), and the documents of a file for causal language modelling (a
 * text file, or each record's text). Text files are strict UTF-8.
 * Every error names the file, the line (the row, for a split's table) and what was wrong.
 *
 * ```ts
 * import type { HfConfig } from "../io/hf_config.ts";
 * declare const config: HfConfig;
 * const data = await readClassificationFile("train.csv", { labels: config.labels });
 * data.examples[0]; // { text: "…", label: 1 }
 * ```
 * @module
 */
import {
  type DataTable,
  readTable,
  tableClassLabels,
  tableColumns,
  TableError,
  type TableFormat,
  tableFormatOf,
} from "../io/data_table.ts";
import { CsvError, type CsvRecord, parseCsv } from "../io/csv.ts";
import { readFailure, readFileBytes } from "../io/paths.ts";
import { DECIMAL, LabelMap } from "./labels.ts";
import { DataError } from "./data_error.ts";

/** One classification example: a text (or a pair of texts) and its label id. */
export interface Example {
  /** The text (the first text of a pair). */
  text: string;
  /** The second text of a pair task (GLUE's sentence2, hypothesis, …). */
  pair?: string;
  /** The class id (a real value for regression; −1 for a multi-label example). */
  label: number;
  /** A multi-label example's class ids (any number of them, each once). */
  labels?: number[];
  /** Where it was read, `file:line` (the row, for a split's table), for errors. */
  source?: string;
}

/** Labelled examples read from a file by {@link readClassificationFile}. */
export interface ClassificationData {
  /** The file read. */
  path: string;
  /** The examples, in file order. */
  examples: Example[];
  /**
   * Names of the label ids: the `labels` option when given, else the file's string labels in
   * first-seen order; null when the file has integer labels only and no names were given.
   */
  labelNames: string[] | null;
  /** The field(s) read as text: [text] or, for a pair task, [first, second]. */
  textFields: string[];
  /** The field read as the label. */
  labelField: string;
  /** The label field holds lists of labels (multi-label classification); each example has `labels`. */
  multiLabel: boolean;
}

/**
 * A labelled data file's format; "arrow" is an Arrow IPC file or a `save_to_disk` folder of them
 * (lib/io/data_table.ts).
 */
export type DataFormat = "jsonl" | "csv" | "tsv" | TableFormat;

/** Options of {@link readClassificationFile}. */
export interface ReadOptions {
  /**
   * File format; by default from the extension (.jsonl/.ndjson/.json: jsonl, .csv, .tsv, .parquet,
   * .arrow), or "arrow" for a folder `save_to_disk` wrote.
   * A "jsonl" file may also hold one JSON array of objects, as `json.dump(records, f)` writes it.
   */
  format?: DataFormat;
  /** Field holding the text. Default: the first of {@link TEXT_FIELDS} the first record has. */
  textField?: string;
  /** Field holding the second text of a pair task (only with textField). */
  pairField?: string;
  /** Field holding the label (default "label"). */
  labelField?: string;
  /**
   * Label names by id, e.g. a model config's id2label (`HfConfig.labels`): a label is looked up
   * here by its text (label2id; a number as `String(n)`, so 1 and "1" are the same class, as
   * transformers' `label_to_id[str(l)]`). Without it, string labels get ids in first-seen order.
   * Integer labels (JSON numbers, or strings of digits, maybe with a `.0` fraction as pandas writes
   * them) that name no class are ids as they are, unless some name is a number other than its own
   * id ("1" for id 0): then they are refused. A split's ClassLabel id is looked up by its name.
   * A name no label matches exactly is matched ignoring case, as run_glue.py does (told to
   * `onWarning`).
   * -1 (`datasets`' "no label") is refused as such; other numbers (0.5, -2, as JSON numbers or
   * text) with the `regression` hint.
   */
  labels?: readonly string[];
  /** Where `labels` come from, in errors: e.g. "the model head's classes, config.json's id2label". */
  labelsFrom?: string;
  /**
   * The labels must be integer ids, as those of another file (the training file's, for an eval
   * file): a name is refused, naming this file (e.g. "train.jsonl").
   */
  idsAs?: string;
  /** The classification head's num_labels: every label id must be below it (default labels.length). */
  numLabels?: number;
  /**
   * The labels are real values (regression, e.g. STS-B's similarity scores): numbers, or strings
   * of decimal numbers, kept as they are; `labels` and `numLabels` do not apply. Refused for a
   * split's ClassLabel column, whose values are class ids.
   */
  regression?: boolean;
  /**
   * Told, in one line, what was read but may be a mistake (a label matched to a name of `labels`
   * only ignoring case); without it nothing is said (the CLI prints it on stderr).
   */
  onWarning?: (message: string) => void;
}

/**
 * Text fields tried in order when no textField is given: a single text, or a GLUE-style pair.
 * The first entry whose fields all appear in the first record is used.
 */
export const TEXT_FIELDS: readonly (readonly string[])[] = [
  ["text"],
  ["sentence1", "sentence2"],
  ["question1", "question2"],
  ["premise", "hypothesis"],
  ["question", "sentence"],
  ["sentence"],
];

/** One record of a data file: its line (its row, for a split's table) and its fields. */
export interface SourceRecord {
  /** 1-based line of a JSONL/CSV file, or row of a split's table (across a save_to_disk folder's shards). */
  line: number;
  /** The record's fields by name. */
  fields: Record<string, unknown>;
}

/**
 * Read a labelled JSONL (one JSON object per line, empty lines skipped; or one JSON array of
 * them), CSV (RFC 4180 quoting) or TSV (read as GLUE's unquoted files are), each with a
 * header line naming the fields, or `datasets` split (a Parquet or Arrow file, or a save_to_disk
 * folder: its ClassLabel names name the label ids, or find them among `labels` when given) into
 * examples with label ids (see {@link ReadOptions}).
 * Text is UTF-8; a leading byte-order mark is ignored. Errors name the file and the line (the row,
 * for a split's table).
 */
export async function readClassificationFile(
  path: string,
  opts: ReadOptions = {},
): Promise<ClassificationData> {
  const format = opts.format ?? formatOf(path);
  if (isTable(format)) {
    const table = await dataTable(path, format);
    const records = table.rows.map((fields, i) => ({ line: i + 1, fields }));
    if (records.length === 0) throw new DataError(`${path}: no examples (the table has no rows)`);
    const labelField = labelFieldOf(Object.keys(records[0].fields), opts.labelField);
    const names = table.classLabels.get(labelField);
    // as run_glue.py, which regresses only on a float label column
    if (opts.regression && names) {
      throw new DataError(
        `${path}: column "${labelField}" is a ClassLabel ${JSON.stringify(names)} by the split's metadata: ` +
          `its values are class ids, not real values, so --regression (the regression option) does not apply`,
      );
    }
    return examplesFrom(records, path, opts, names);
  }
  const text = await readDataText(path);
  const records = format === "jsonl" ? jsonlRecords(text, path) : csvRecords(text, path, format);
  return examplesFrom(records, path, opts);
}

/** Whether records of `format` are read as a split's table (lib/io/data_table.ts). */
function isTable(format: DataFormat): format is TableFormat {
  return format === "parquet" || format === "arrow";
}

/** The table of the split at `path`; what cannot be read is a DataError. */
async function dataTable(path: string, format: TableFormat): Promise<DataTable> {
  return await asDataError(() => readTable(path, format));
}

/** `read()`, with a table's errors as DataErrors. */
async function asDataError<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    throw e instanceof TableError ? new DataError(e.message) : e;
  }
}

/**
 * The text of a UTF-8 file, without a leading byte-order mark. A missing file, and bytes that are
 * not UTF-8 (as `datasets` decodes with `encoding_errors="strict"`), are a DataError; the latter
 * names the line and offset of the first bad byte.
 */
export async function readDataText(path: string): Promise<string> {
  const bytes = await readFileBytes(path, (message) => new DataError(message));
  refuseUtf16(path, bytes);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes); // drops a BOM
  } catch {
    const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
    const chars = utf16Length(bytes) - (bom ? 1 : 0);
    if (chars > MAX_STRING_LENGTH) {
      throw new DataError(
        `${path}: ${chars} characters of text, more than the ${MAX_STRING_LENGTH} a JavaScript string ` +
          `holds (about 512 MiB of ASCII text), and a data file is read whole: train on a part of it`,
      );
    }
    const at = firstBadByte(bytes);
    throw notUtf8(path, 1 + newlineBytes(bytes.subarray(0, at)), at, bytes[at]);
  }
}

/** The DataError for a data file that cannot be read (`e`, what opening or reading it threw). */
function unreadable(path: string, e: unknown): DataError {
  return new DataError(readFailure(path, e));
}

/** Refuses a file whose first bytes, `head`, are a UTF-16 byte-order mark. */
function refuseUtf16(path: string, head: Uint8Array): void {
  const utf16 = head[0] === 0xff && head[1] === 0xfe
    ? "little"
    : head[0] === 0xfe && head[1] === 0xff
    ? "big"
    : null;
  if (utf16) {
    throw new DataError(
      `${path}: UTF-16 (${utf16}-endian) text, by its byte-order mark; convert the file to UTF-8`,
    );
  }
}

/** The DataError for `byte`, not UTF-8, at offset `at` of a file, on its line `line`. */
function notUtf8(path: string, line: number, at: number, byte: number): DataError {
  const hex = byte.toString(16).toUpperCase().padStart(2, "0");
  return new DataError(
    `${path}:${line}: not UTF-8 text (byte 0x${hex} at offset ${at}); convert the file to UTF-8`,
  );
}

/** The line breaks (0x0A bytes) of `bytes`. */
function newlineBytes(bytes: Uint8Array): number {
  let n = 0;
  for (let i = bytes.indexOf(0x0a); i >= 0; i = bytes.indexOf(0x0a, i + 1)) n++;
  return n;
}

/** The most characters (UTF-16 code units) a string holds: V8's limit on 64-bit machines, 2^29 − 24. */
export const MAX_STRING_LENGTH = 2 ** 29 - 24;

/**
 * The UTF-16 code units of UTF-8 `bytes`: one a sequence, two for one of 4 bytes (about as many where
 * they are not UTF-8).
 */
function utf16Length(bytes: Uint8Array): number {
  let units = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if ((b & 0xc0) !== 0x80) units += b >= 0xf0 ? 2 : 1;
  }
  return units;
}

/** The offset of the first byte of the first sequence that is not UTF-8 (the bytes hold one). */
function firstBadByte(bytes: Uint8Array): number {
  // the shortest prefix a streaming decoder refuses ends with the byte that showed the error
  const refuses = (n: number) => {
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, n), { stream: true });
      return false;
    } catch {
      return true;
    }
  };
  let lo = 1, hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (refuses(mid)) hi = mid;
    else lo = mid + 1;
  }
  // a sequence begun within the 3 bytes before it, and cut short by it, is the bad one
  const k = lo - 1;
  for (let j = k - 1; j >= Math.max(0, k - 3); j--) {
    const b = bytes[j];
    if (b < 0x80 || b >= 0xc0) {
      const length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
      return j + length > k ? j : k;
    }
  }
  return k;
}

function formatOf(path: string): DataFormat {
  const ext = path.toLowerCase().match(/\.([a-z]+)$/)?.[1];
  if (ext === "jsonl" || ext === "ndjson" || ext === "json") return "jsonl";
  if (ext === "csv" || ext === "tsv") return ext;
  const table = tableFormatOf(path);
  if (table) return table;
  throw new DataError(
    `${path}: unknown data format (expected a .jsonl, .ndjson, .json, .csv, .tsv or .parquet file, or Arrow: ` +
      `an .arrow file or a folder that save_to_disk wrote)`,
  );
}

/** JSON Lines records; or the objects of a JSON array, as `datasets`' json loader takes both. */
function jsonlRecords(text: string, path: string): SourceRecord[] {
  if (text.trimStart().startsWith("[")) return jsonArrayRecords(text, path);
  const records: SourceRecord[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new DataError(`${path}:${i + 1}: malformed JSON (${(e as Error).message})`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      const kind = value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;
      throw new DataError(`${path}:${i + 1}: expected a JSON object, got ${kind}`);
    }
    records.push({ line: i + 1, fields: value as Record<string, unknown> });
  });
  if (records.length === 0) throw new DataError(`${path}: no examples (the file is empty)`);
  return records;
}

/** The objects of a file holding one JSON array, each with the line it starts on. */
function jsonArrayRecords(text: string, path: string): SourceRecord[] {
  let items: unknown[];
  try {
    items = JSON.parse(text);
  } catch (e) {
    throw new DataError(`${path}: malformed JSON array (${(e as Error).message})`);
  }
  if (!Array.isArray(items)) throw new DataError(`${path}: malformed JSON array (not an array)`);
  const lines = arrayItemLines(text);
  const records = items.map((value, k) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      const kind = value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;
      throw new DataError(`${path}:${lines[k]}: expected a JSON object in the array, got ${kind}`);
    }
    return { line: lines[k], fields: value as Record<string, unknown> };
  });
  if (records.length === 0) throw new DataError(`${path}: no examples (the JSON array is empty)`);
  return records;
}

/** The line each item of the (valid) JSON array `text` starts on. */
function arrayItemLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1, depth = 0, inString = false, itemNext = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\n") line++;
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (/\s/.test(c)) continue;
    if (itemNext && c !== "]") lines.push(line);
    itemNext = false;
    if (c === '"') inString = true;
    else if (c === "[" || c === "{") itemNext = ++depth === 1;
    else if (c === "]" || c === "}") depth--;
    else if (c === "," && depth === 1) itemNext = true;
  }
  return lines;
}

/** CSV with RFC 4180 quoting; TSV quoted only where a field's quotes close on its line (lib/io/csv.ts). */
function csvRows(text: string, path: string, format: "csv" | "tsv"): CsvRecord[] {
  try {
    return format === "tsv" ? parseCsv(text, path, "\t", "line") : parseCsv(text, path, ",");
  } catch (e) {
    if (e instanceof CsvError) throw new DataError(e.message);
    throw e;
  }
}

/** The records of a CSV or TSV file's text (see {@link csvRows}), by the header's field names. */
function csvRecords(text: string, path: string, format: "csv" | "tsv"): SourceRecord[] {
  const rows = csvRows(text, path, format);
  if (rows.length === 0) throw new DataError(`${path}: no examples (the file is empty)`);
  const header = headerNames(rows[0], path);
  if (rows.length === 1) throw new DataError(`${path}: no examples (only a header line)`);
  return rows.slice(1).map(({ line, fields }, k) => {
    if (fields.length !== header.length) {
      // a quote left open on this record's line or the one before may have split a record
      const open = rows[k + 1].unclosedQuote ?? (k > 0 ? rows[k].unclosedQuote : undefined);
      throw new DataError(
        `${path}:${line}: ${fields.length} fields, but the header has ${header.length} (${
          header.join(", ")
        })` +
          (open === undefined ? "" : `; line ${open} opens a quote that does not close on it, read as a ` +
            `character (a field quoted across lines must close right before a tab or a line end, in a ` +
            `record of ${header.length} fields)`),
      );
    }
    return { line, fields: Object.fromEntries(header.map((name, k) => [name, fields[k]])) };
  });
}

/** The field names of a CSV or TSV header record; a name given twice is a DataError. */
function headerNames(header: CsvRecord, path: string): string[] {
  const seen = new Set<string>();
  for (const name of header.fields) {
    if (seen.has(name)) {
      throw new DataError(`${path}:${header.line}: the header names field "${name}" twice`);
    }
    seen.add(name);
  }
  return header.fields;
}

/**
 * The label field of records with these fields: the one named, else "label", else "labels" (the
 * label lists of go_emotions-style multi-label sets) when only that is there.
 */
export function labelFieldOf(fieldNames: readonly string[], named?: string): string {
  return named ?? (!fieldNames.includes("label") && fieldNames.includes("labels") ? "labels" : "label");
}

/**
 * Records → examples: pick the text field(s), map labels to ids (a split's ClassLabel ids
 * through its `classNames`), check them against num_labels.
 */
function examplesFrom(
  records: SourceRecord[],
  path: string,
  opts: ReadOptions,
  classNames?: readonly string[],
): ClassificationData {
  const labelField = labelFieldOf(Object.keys(records[0].fields), opts.labelField);
  const textFields = textFieldsOf(records[0], path, opts);
  const labels = new LabelMap({ ...opts, classNames });
  // a list of labels in the first record's label field: multi-label data
  const multiLabel = !opts.regression && Array.isArray(records[0].fields[labelField]);
  if (multiLabel) refuseMultiHot(records, labelField, path);
  const examples = records.map(({ line, fields }) => {
    const texts = textsOf(fields, textFields, path, line);
    if (!(labelField in fields)) {
      throw new DataError(
        `${path}:${line}: missing field "${labelField}"` +
          (opts.labelField === undefined ? ` (or name the label field: --label-field, or labelField)` : "") +
          `; the fields are ${Object.keys(fields).join(", ")}`,
      );
    }
    const value = fields[labelField], where = `${path}:${line}`;
    if (Array.isArray(value) !== multiLabel) {
      throw new DataError(
        `${where}: the label ${JSON.stringify(value)} is ${multiLabel ? "not a list" : "a list"}, ` +
          `but the first example's is ${multiLabel ? "a list (multi-label data)" : "one label"}`,
      );
    }
    const example: Example = multiLabel
      ? {
        text: texts[0],
        label: -1,
        labels: [...new Set((value as unknown[]).map((v) => labels.id(v, where)))],
      }
      : {
        text: texts[0],
        label: opts.regression ? targetValue(value, where, labelField) : labels.id(value, where),
      };
    if (texts.length > 1) example.pair = texts[1];
    example.source = where;
    return example;
  });
  const labelNames = opts.regression ? null : labels.names();
  return { path, examples, labelNames, textFields, labelField, multiLabel };
}

/**
 * Refuse multi-hot vectors ([0, 1, 0, 0, 1], what transformers' multi-label loss takes) where
 * lists of class ids belong: every label list as long, with 3 entries or more, each 0 or 1. A list
 * of ids names each class once, so one of 0s and 1s alone has 2 entries at most.
 */
function refuseMultiHot(records: SourceRecord[], labelField: string, path: string): void {
  const lists = records.map(({ fields }) => fields[labelField]);
  const first = lists[0] as unknown[];
  const hot = (list: unknown) =>
    Array.isArray(list) && list.length === first.length && list.every((v) => v === 0 || v === 1);
  if (first.length < 3 || !lists.every(hot)) return;
  const ids = first.flatMap((v, id) => v === 1 ? [id] : []);
  throw new DataError(
    `${path}:${records[0].line}: the labels in field "${labelField}" are multi-hot vectors (every list ` +
      `has ${first.length} entries, each 0 or 1), but a label list names its classes by id, as ` +
      `go_emotions' labels do: ${JSON.stringify(ids)} for ${JSON.stringify(first)}`,
  );
}

/** A regression target: a finite number, or a string holding one in decimal. */
function targetValue(value: unknown, where: string, field: string): number {
  const v = typeof value === "string" && DECIMAL.test(value.trim()) ? Number(value) : value;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new DataError(
      `${where}: the regression label ${
        JSON.stringify(value)
      } in field "${field}" is not a finite decimal number`,
    );
  }
  return v;
}

/** The text field(s) to read: the options', else the first of {@link TEXT_FIELDS} the record has. */
function textFieldsOf(first: SourceRecord, path: string, opts: ReadOptions): string[] {
  if (opts.textField !== undefined) {
    return opts.pairField === undefined ? [opts.textField] : [opts.textField, opts.pairField];
  }
  if (opts.pairField !== undefined) {
    throw new DataError(
      `${path}: the pair field "${opts.pairField}" needs the text field named too (--text-field, or textField)`,
    );
  }
  const found = TEXT_FIELDS.find((names) => names.every((n) => n in first.fields));
  if (!found) {
    throw new DataError(
      `${path}:${first.line}: no text field: expected one of ${
        TEXT_FIELDS.map((f) => f.join(" + ")).join(", ")
      } (or name it: --text-field, or textField); the fields are ${
        Object.keys(first.fields).join(", ") || "none"
      }`,
    );
  }
  return [...found];
}

/** The strings of `names` in one record. */
function textsOf(fields: Record<string, unknown>, names: string[], path: string, line: number): string[] {
  return names.map((name) => {
    if (!(name in fields)) {
      throw new DataError(
        `${path}:${line}: missing field "${name}"; the fields are ${Object.keys(fields).join(", ")}`,
      );
    }
    const v = fields[name];
    if (typeof v !== "string") {
      throw new DataError(`${path}:${line}: field "${name}" must be a string, got ${JSON.stringify(v)}`);
    }
    return v;
  });
}

/**
 * The texts (or pairs) of a data file, without labels (a label field is ignored): a .txt file
 * gives one text per non-empty line; JSONL, CSV/TSV files and `datasets` splits their text field(s), found
 * as {@link readClassificationFile} finds them.
 */
export async function readTexts(
  path: string,
  opts: Pick<ReadOptions, "format" | "textField" | "pairField"> = {},
): Promise<{ text: string; pair?: string }[]> {
  let records: SourceRecord[];
  if (opts.format === undefined && /\.txt$/i.test(path)) {
    if (opts.textField !== undefined || opts.pairField !== undefined) {
      throw new DataError(
        `${path}: a .txt file is one text per line, without fields: --text-field and --pair-field ` +
          `(textField, pairField) name the fields of records (.jsonl, .csv, .tsv, .parquet, .arrow)`,
      );
    }
    const text = await readDataText(path);
    records = text.split("\n").map((l, i) => ({ line: i + 1, fields: { text: l.replace(/\r$/, "") } }))
      .filter((r) => (r.fields.text as string).trim() !== "");
    if (records.length === 0) throw new DataError(`${path}: no texts (the file is empty)`);
  } else {
    records = await readRecords(path, opts.format);
  }
  const fields = textFieldsOf(records[0], path, opts);
  return records.map(({ line, fields: f }) => {
    const [text, pair] = textsOf(f, fields, path, line);
    return pair === undefined ? { text } : { text, pair };
  });
}

/**
 * The records of a JSONL or CSV/TSV file or a `datasets` split (format from the path unless given);
 * a file without any is a DataError.
 */
export async function readRecords(path: string, format?: DataFormat): Promise<SourceRecord[]> {
  return (await readRecordTable(path, format)).records;
}

/**
 * {@link readRecords}, with the ClassLabel names a split's schema gives its columns (a list
 * column's names are those of its items); no names for other formats.
 */
export async function readRecordTable(
  path: string,
  format?: DataFormat,
): Promise<{ records: SourceRecord[]; classLabels: Map<string, string[]> }> {
  const f = format ?? formatOf(path);
  if (isTable(f)) {
    const table = await dataTable(path, f);
    const records = table.rows.map((fields, i) => ({ line: i + 1, fields }));
    if (records.length === 0) throw new DataError(`${path}: no records (the table has no rows)`);
    return { records, classLabels: table.classLabels };
  }
  const text = await readDataText(path);
  const records = f === "jsonl" ? jsonlRecords(text, path) : csvRecords(text, path, f);
  return { records, classLabels: new Map() };
}

/**
 * The ClassLabel names of a split's columns (a list column's are those of its items), from its
 * schema alone; none for a file of another format.
 */
export async function recordClassLabels(path: string): Promise<Map<string, string[]>> {
  const format = tableFormatOf(path);
  return format ? await asDataError(() => tableClassLabels(path, format)) : new Map();
}

/**
 * The field names of a record file's first record, without reading the whole file where its format
 * allows: a split's columns, the first JSONL object's keys, a CSV/TSV header; null for a file of
 * another kind.
 */
export async function recordFieldNames(path: string): Promise<string[] | null> {
  const format = tableFormatOf(path);
  if (format) return await asDataError(() => tableColumns(path, format));
  const csv = path.match(/\.(csv|tsv)$/i)?.[1].toLowerCase() as "csv" | "tsv" | undefined;
  if (csv) return await csvHeader(path, csv);
  if (!/\.(jsonl|ndjson|json)$/i.test(path)) return null;
  const start = await firstLines(path);
  // a JSON array is parsed whole
  const records = start.trimStart().startsWith("[") ? await readRecords(path) : jsonlRecords(start, path);
  return Object.keys(records[0].fields);
}

/**
 * The field names of a CSV or TSV file's header, read from the file's first lines; a header that
 * does not end on its line (a quoted name spanning lines), or a file without one, is read with the
 * whole file, and its errors are that read's.
 */
async function csvHeader(path: string, format: "csv" | "tsv"): Promise<string[]> {
  const start = await firstLines(path);
  let header: CsvRecord | undefined;
  try {
    header = csvRows(start, path, format)[0];
  } catch (e) {
    if (!(e instanceof DataError)) throw e;
  }
  // a TSV name whose quote does not close on its line may close on a later one
  if (header === undefined || header.unclosedQuote !== undefined) {
    return Object.keys((await readRecords(path, format))[0].fields);
  }
  // in the order a record's keys come in (names that are integers first, as objects order them)
  return Object.keys(Object.fromEntries(headerNames(header, path).map((name) => [name, name])));
}

/**
 * A text file's start, through its first line that is not blank (a BOM removed); bytes that are
 * not UTF-8 are {@link readDataText}'s error.
 */
async function firstLines(path: string): Promise<string> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw unreadable(path, e);
  }
  // each chunk looked at alone: the text so far, split again at each one, takes time quadratic in the
  // length of a first line (a JSON array written on one line)
  const chunks: string[] = [];
  let blank = true; // no character but whitespace so far
  try {
    for await (const chunk of file.readable.pipeThrough(new TextDecoderStream("utf-8", { fatal: true }))) {
      chunks.push(chunk);
      const from = blank ? chunk.search(/\S/) : 0;
      if (from >= 0) blank = false;
      if (!blank && chunk.indexOf("\n", from) >= 0) break; // the stream is cancelled, the file closed
    }
  } catch (e) {
    if (!(e instanceof TypeError)) throw unreadable(path, e); // a folder opens, and fails when read
    await readDataText(path); // throws, naming the first bad byte
  }
  const text = chunks.join(""), lines = text.split("\n"), first = lines.findIndex((l) => l.trim() !== "");
  return first < 0 ? text : lines.slice(0, first + 1).join("\n");
}

/** Whether {@link readTextDocuments} reads `path` as plain text (not as a file of records). */
export function isPlainText(path: string): boolean {
  return !/\.(jsonl|ndjson|json|csv|tsv)$/i.test(path) && tableFormatOf(path) === null;
}

/**
 * The documents to train a causal LM on: a .txt (or .text, .md) file as it is, one document, or the
 * text field of every record of a JSONL or CSV/TSV file or a `datasets` split (`textField`, default "text"), one
 * document each. Other files, bytes that are not UTF-8, and text that is mostly NULs are refused.
 */
export async function readTextDocuments(path: string, opts: { textField?: string } = {}): Promise<string[]> {
  if (isPlainText(path)) {
    checkPlainText(path, opts.textField);
    const text = await readDataText(path);
    if (text.length === 0) throw new DataError(`${path}: no text (the file is empty)`);
    refuseMostlyNul(path, text.split("\0").length - 1, text.length);
    return [text];
  }
  const field = opts.textField ?? "text", records = await readRecords(path);
  const noun = tableFormatOf(path) ? "column" : "field";
  if (!(field in records[0].fields)) {
    throw new DataError(
      `${path}: no ${noun} "${field}" (name the text ${noun}: --text-field, or textField); the ${noun}s are ` +
        Object.keys(records[0].fields).join(", "),
    );
  }
  const texts = records.map(({ line, fields }) => {
    const v = fields[field];
    if (typeof v !== "string") {
      throw new DataError(`${path}:${line}: ${noun} "${field}" must be a string, got ${JSON.stringify(v)}`);
    }
    return v;
  });
  if (texts.every((t) => t.length === 0)) {
    throw new DataError(`${path}: no text (${noun} "${field}" is empty)`);
  }
  return texts;
}

/**
 * Refuses a plain-text `path` ({@link isPlainText}) that is not a .txt, .text or .md file, and a
 * `textField` for one (it is one document, without fields).
 */
export function checkPlainText(path: string, textField?: string): void {
  if (!/\.(txt|text|md)$/i.test(path)) {
    throw new DataError(
      `${path}: unknown data format (plain text is a .txt or .md file; records a .jsonl, .csv, .tsv, ` +
        `.parquet or .arrow file, or a folder that save_to_disk wrote)`,
    );
  }
  if (textField !== undefined) {
    throw new DataError(
      `${path}: plain text is one document, without fields: --text-field (textField) names the text ` +
        `field of records (.jsonl, .csv, .tsv, .parquet, .arrow)`,
    );
  }
}

/**
 * Refuses text of `chars` characters, `nuls` of them NULs, as a binary file where there are many:
 * NULs are UTF-8 too (a binary file, or UTF-16 without a byte-order mark, has many).
 */
function refuseMostlyNul(path: string, nuls: number, chars: number): void {
  if (nuls > Math.max(2, chars / 100)) {
    throw new DataError(`${path}: not UTF-8 text (a binary file, or UTF-16?)`);
  }
}

/** A piece of a text file, as {@link readTextChunks} reads it. */
export interface TextChunk {
  /** Its text (a character cut by the chunk's end begins the next one). */
  text: string;
  /** The bytes read for it. */
  bytes: number;
  /** The bytes of the whole file. */
  size: number;
}

/**
 * The text of a plain-text file, read and decoded `chunkBytes` bytes at a time (at least 4): what
 * {@link readTextDocuments} reads as one string, for a file larger than a string holds
 * ({@link MAX_STRING_LENGTH}). It is refused as readTextDocuments refuses it, with the same errors:
 * bytes that are not UTF-8 when they are reached, an empty file and one mostly NULs after its last
 * chunk (the latter as soon as its NULs are more than 1% of its bytes).
 */
export async function* readTextChunks(path: string, chunkBytes = 1 << 20): AsyncGenerator<TextChunk> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw unreadable(path, e);
  }
  try {
    const size = (await file.stat()).size, buffer = new Uint8Array(Math.max(4, chunkBytes));
    const decoder = new TextDecoder("utf-8", { fatal: true }); // drops a BOM
    // bytes decoded before this chunk, the lines they end, the last 3 of them
    let offset = 0, line = 1, last = new Uint8Array(0);
    let chars = 0, nuls = 0;
    for (;;) {
      let read: number | null;
      try {
        read = await file.read(buffer);
      } catch (e) {
        throw unreadable(path, e);
      }
      const bytes = buffer.subarray(0, read ?? 0);
      if (offset === 0) refuseUtf16(path, bytes);
      let text: string;
      try {
        text = decoder.decode(bytes, { stream: read !== null });
      } catch {
        // the bad sequence begins in this chunk or in the one the decoder holds from the last
        const held = unfinishedSequence(last), window = concat(last.subarray(last.length - held), bytes);
        const at = offset - held + firstBadByte(window);
        const before = bytes.subarray(0, Math.max(0, at - offset)); // the held bytes end no line
        throw notUtf8(path, line + newlineBytes(before), at, window[at - offset + held]);
      }
      chars += text.length;
      nuls += text.split("\0").length - 1;
      refuseMostlyNul(path, nuls, size); // no more characters than bytes: mostly NULs, whatever follows
      if (read === null) break;
      offset += read;
      line += newlineBytes(bytes);
      last = concat(last, bytes.subarray(-3)).slice(-3);
      yield { text, bytes: read, size };
    }
    if (chars === 0) throw new DataError(`${path}: no text (the file is empty)`);
    refuseMostlyNul(path, nuls, chars);
  } finally {
    file.close();
  }
}

/** The bytes at the end of `bytes` that begin a UTF-8 sequence without ending it (0 to 3). */
function unfinishedSequence(bytes: Uint8Array): number {
  for (let j = bytes.length - 1; j >= Math.max(0, bytes.length - 3); j--) {
    const b = bytes[j];
    if (b < 0x80) return 0;
    if (b >= 0xc0) return j + (b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2) > bytes.length ? bytes.length - j : 0;
  }
  return 0;
}

/** `a` and `b`, one after the other. */
function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const both = new Uint8Array(a.length + b.length);
  both.set(a);
  both.set(b, a.length);
  return both;
}

/** The documents of {@link readTextDocuments} as one text ({@link joinDocuments}). */
export async function readTextFile(path: string, opts: { textField?: string } = {}): Promise<string> {
  return joinDocuments(await readTextDocuments(path, opts));
}

/**
 * Documents as one text: a blank line between two, but nothing after one that ends in a line break
 * (a line of a longer text, as each of wikitext's records is), and there an empty record adds
 * nothing either; wikitext's records then make the text run_clm.py concatenates.
 */
export function joinDocuments(documents: readonly string[]): string {
  let text = "", previous: string | null = null;
  for (const doc of documents) {
    const afterLine = previous === null || previous.endsWith("\n");
    if (afterLine && doc === "") continue;
    text += (afterLine ? "" : "\n\n") + doc;
    previous = doc;
  }
  return text;
}
