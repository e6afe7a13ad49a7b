/**
 * Training data: labelled text files (JSONL, CSV, TSV, Parquet) for sequence classification,
 * plain text (or a Parquet text column) for causal language modelling, and a seeded, resumable, epoch-aware batch iterator over either.
 *
 * ```ts
 * const data = await readClassificationFile("train.csv", { labels: config.labels });
 * const dataset = new ClassificationDataset(data.examples, tokenizer, { maxLength: 128 });
 * const batches = new BatchIterator(dataset, { batchSize: 16, seed: 0 });
 * for (const { epoch, step, batch } of batches.batches({ epoch: 0, step: 0 }, 3)) { … }
 * ```
 *
 * Every error names the file, the line (1-based) and what was wrong.
 * @module
 */
import { ParquetError, type ParquetTable, readParquet } from "../io/parquet.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import { Prng } from "../spectral/prng.ts";
import { CsvError, parseCsv } from "./csv.ts";

/** A data file that cannot be used: missing, malformed, a missing field, a bad label, no examples. */
export class DataError extends Error {
  /** Always "DataError". */
  override name = "DataError";
}

/** One classification example: a text (or a pair of texts) and its label id. */
export interface Example {
  /** The text (the first text of a pair). */
  text: string;
  /** The second text of a pair task (GLUE's sentence2, hypothesis, …). */
  pair?: string;
  /** The class id. */
  label: number;
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
}

/** A labelled data file's format. */
export type DataFormat = "jsonl" | "csv" | "tsv" | "parquet";

/** Options of {@link readClassificationFile}. */
export interface ReadOptions {
  /** File format; by default from the extension (.jsonl/.ndjson/.json: jsonl, .csv, .tsv, .parquet). */
  format?: DataFormat;
  /** Field holding the text. Default: the first of {@link TEXT_FIELDS} the first record has. */
  textField?: string;
  /** Field holding the second text of a pair task (only with textField). */
  pairField?: string;
  /** Field holding the label (default "label"). */
  labelField?: string;
  /**
   * Label names by id, e.g. a model config's id2label (`HfConfig.labels`): a string label is
   * looked up here (label2id). Without it, string labels get ids in first-seen order.
   * Integer labels (JSON numbers, or strings of digits that are not a name) are ids as they are.
   */
  labels?: readonly string[];
  /** The classification head's num_labels: every label id must be below it (default labels.length). */
  numLabels?: number;
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

/** One record of a data file: its fields and the line it starts on. */
interface SourceRecord {
  line: number;
  fields: Record<string, unknown>;
}

/**
 * Read a labelled JSONL (one JSON object per line; empty lines skipped), CSV/TSV (RFC 4180, a
 * header line naming the fields) or Parquet file (a `datasets` split: its ClassLabel names name
 * the label ids unless `labels` is given) into examples with label ids (see {@link ReadOptions}).
 * A leading byte-order mark is ignored. Errors name the file and the line (the row, for Parquet).
 */
export async function readClassificationFile(
  path: string,
  opts: ReadOptions = {},
): Promise<ClassificationData> {
  const format = opts.format ?? formatOf(path);
  if (format === "parquet") {
    const table = await parquetTable(path);
    const names = table.classLabels.get(opts.labelField ?? "label");
    const records = table.rows.map((fields, i) => ({ line: i + 1, fields }));
    if (records.length === 0) throw new DataError(`${path}: no examples (the table has no rows)`);
    return examplesFrom(records, path, { ...opts, labels: opts.labels ?? names });
  }
  const text = await readFile(path);
  const records = format === "jsonl"
    ? jsonlRecords(text, path)
    : csvRecords(text, path, format === "tsv" ? "\t" : ",");
  return examplesFrom(records, path, opts);
}

/** A Parquet file's table; what cannot be read is a DataError. */
async function parquetTable(path: string): Promise<ParquetTable> {
  try {
    return await readParquet(path);
  } catch (e) {
    throw e instanceof ParquetError ? new DataError(e.message) : e;
  }
}

/** The text of a file, without a leading byte-order mark; a missing file is a DataError. */
async function readFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(`${path}: file not found`);
    if (e instanceof Deno.errors.IsADirectory) {
      throw new DataError(`${path}: is a directory, not a data file`);
    }
    throw new DataError(`${path}: cannot read: ${(e as Error).message}`);
  }
  return text.startsWith("\ufeff") ? text.slice(1) : text;
}

function formatOf(path: string): DataFormat {
  const ext = path.toLowerCase().match(/\.([a-z]+)$/)?.[1];
  if (ext === "jsonl" || ext === "ndjson" || ext === "json") return "jsonl";
  if (ext === "csv" || ext === "tsv" || ext === "parquet") return ext;
  throw new DataError(
    `${path}: unknown data format (expected a .jsonl, .csv, .tsv or .parquet file, or pass format)`,
  );
}

function jsonlRecords(text: string, path: string): SourceRecord[] {
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

function csvRecords(text: string, path: string, delimiter: string): SourceRecord[] {
  let rows;
  try {
    rows = parseCsv(text, path, delimiter);
  } catch (e) {
    if (e instanceof CsvError) throw new DataError(e.message);
    throw e;
  }
  if (rows.length === 0) throw new DataError(`${path}: no examples (the file is empty)`);
  const header = rows[0].fields;
  const seen = new Set<string>();
  for (const name of header) {
    if (seen.has(name)) {
      throw new DataError(`${path}:${rows[0].line}: the header names field "${name}" twice`);
    }
    seen.add(name);
  }
  if (rows.length === 1) throw new DataError(`${path}: no examples (only a header line)`);
  return rows.slice(1).map(({ line, fields }) => {
    if (fields.length !== header.length) {
      throw new DataError(
        `${path}:${line}: ${fields.length} fields, but the header has ${header.length} (${
          header.join(", ")
        })`,
      );
    }
    return { line, fields: Object.fromEntries(header.map((name, k) => [name, fields[k]])) };
  });
}

/** Records → examples: pick the text field(s), map labels to ids, check them against num_labels. */
function examplesFrom(records: SourceRecord[], path: string, opts: ReadOptions): ClassificationData {
  const labelField = opts.labelField ?? "label";
  const textFields = textFieldsOf(records[0], path, opts);
  const labels = new LabelMap(path, opts);
  const examples = records.map(({ line, fields }) => {
    const texts = textsOf(fields, textFields, path, line);
    if (!(labelField in fields)) {
      throw new DataError(
        `${path}:${line}: missing field "${labelField}"` +
          (opts.labelField === undefined
            ? ` (or name the label field: --label-field, or labelField); the fields are ${
              Object.keys(fields).join(", ")
            }`
            : ""),
      );
    }
    const example: Example = { text: texts[0], label: labels.id(fields[labelField], line) };
    if (texts.length > 1) example.pair = texts[1];
    return example;
  });
  return { path, examples, labelNames: labels.names(), textFields, labelField };
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
    if (!(name in fields)) throw new DataError(`${path}:${line}: missing field "${name}"`);
    const v = fields[name];
    if (typeof v !== "string") {
      throw new DataError(`${path}:${line}: field "${name}" must be a string, got ${JSON.stringify(v)}`);
    }
    return v;
  });
}

/**
 * The texts (or pairs) of a data file, without labels (a label field is ignored): a .txt file
 * gives one text per non-empty line; JSONL, CSV/TSV and Parquet files their text field(s), found
 * as {@link readClassificationFile} finds them.
 */
export async function readTexts(
  path: string,
  opts: Pick<ReadOptions, "format" | "textField" | "pairField"> = {},
): Promise<{ text: string; pair?: string }[]> {
  let records: SourceRecord[];
  if (opts.format === undefined && /\.txt$/i.test(path)) {
    const text = await readFile(path);
    records = text.split("\n").map((l, i) => ({ line: i + 1, fields: { text: l.replace(/\r$/, "") } }))
      .filter((r) => (r.fields.text as string).trim() !== "");
    if (records.length === 0) throw new DataError(`${path}: no texts (the file is empty)`);
  } else {
    const format = opts.format ?? formatOf(path);
    if (format === "parquet") {
      records = (await parquetTable(path)).rows.map((fields, i) => ({ line: i + 1, fields }));
      if (records.length === 0) throw new DataError(`${path}: no texts (the table has no rows)`);
    } else {
      const text = await readFile(path);
      records = format === "jsonl"
        ? jsonlRecords(text, path)
        : csvRecords(text, path, format === "tsv" ? "\t" : ",");
    }
  }
  const fields = textFieldsOf(records[0], path, opts);
  return records.map(({ line, fields: f }) => {
    const [text, pair] = textsOf(f, fields, path, line);
    return pair === undefined ? { text } : { text, pair };
  });
}

/** Label values → ids (see {@link ReadOptions.labels}), checked against the head's num_labels. */
class LabelMap {
  private readonly given: Map<string, number> | null;
  private readonly seen = new Map<string, number>();
  private sawInteger = false;
  private readonly limit: number | null;

  constructor(private readonly path: string, opts: ReadOptions) {
    this.given = opts.labels ? new Map(opts.labels.map((name, id) => [name, id])) : null;
    if (opts.numLabels !== undefined && !(Number.isInteger(opts.numLabels) && opts.numLabels >= 1)) {
      throw new RangeError(`numLabels must be an integer ≥ 1, got ${opts.numLabels}`);
    }
    this.limit = opts.numLabels ?? opts.labels?.length ?? null;
  }

  id(value: unknown, line: number): number {
    const where = `${this.path}:${line}`;
    let id: number;
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new DataError(`${where}: label ${value} is not a class id (an integer ≥ 0)`);
      }
      id = value;
      this.sawInteger = true;
    } else if (typeof value === "string") {
      const named = this.given?.get(value);
      if (named !== undefined) {
        id = named;
      } else if (/^\d+$/.test(value.trim())) {
        id = Number(value.trim());
        this.sawInteger = true;
      } else if (this.given) {
        throw new DataError(
          `${where}: label ${JSON.stringify(value)} is not one of the labels ${
            JSON.stringify([...this.given.keys()])
          }`,
        );
      } else {
        id = this.seen.get(value) ?? this.seen.size;
        this.seen.set(value, id);
      }
    } else {
      throw new DataError(`${where}: label ${JSON.stringify(value)} is neither an integer nor a string`);
    }
    if (this.sawInteger && this.seen.size > 0) {
      throw new DataError(
        `${where}: the labels mix integer ids and names (${JSON.stringify(value)}); pass the label names ` +
          `(labels option) so that names map to ids`,
      );
    }
    if (this.limit !== null && id >= this.limit) {
      throw new DataError(
        `${where}: label ${JSON.stringify(value)} (id ${id}) does not fit the head's ${this.limit} labels ` +
          `(ids 0..${this.limit - 1})`,
      );
    }
    return id;
  }

  names(): string[] | null {
    if (this.given) return [...this.given.keys()];
    return this.seen.size > 0 ? [...this.seen.keys()] : null;
  }
}

/**
 * Throw unless every example's label is an id below `numLabels` (examples made in code, e.g.
 * from a packaged dataset, never went through a file's checks). `source` names them.
 */
export function checkLabels(examples: readonly Example[], numLabels: number, source: string): void {
  examples.forEach((ex, i) => {
    if (!(Number.isInteger(ex.label) && ex.label >= 0 && ex.label < numLabels)) {
      throw new DataError(
        `${source}: example ${i} has label ${ex.label}, which does not fit the head's ${numLabels} labels ` +
          `(ids 0..${numLabels - 1})`,
      );
    }
  });
}

/**
 * The text of a file for causal language modelling: a plain-text file (a leading byte-order
 * mark removed), or the `textField` column (default "text") of a Parquet file, its rows joined
 * by blank lines. A missing or empty file is a DataError.
 */
export async function readTextFile(path: string, opts: { textField?: string } = {}): Promise<string> {
  if (/\.parquet$/i.test(path)) return parquetText(path, opts.textField ?? "text");
  const text = await readFile(path);
  if (text.length === 0) throw new DataError(`${path}: no text (the file is empty)`);
  return text;
}

async function parquetText(path: string, field: string): Promise<string> {
  const table = await parquetTable(path);
  if (!table.columns.includes(field)) {
    throw new DataError(
      `${path}: no column "${field}" (name the text column: --text-field, or textField); the columns are ` +
        table.columns.join(", "),
    );
  }
  const texts = table.rows.map((row, i) => {
    const v = row[field];
    if (typeof v !== "string") {
      throw new DataError(`${path}:${i + 1}: column "${field}" must be a string, got ${JSON.stringify(v)}`);
    }
    return v;
  });
  const text = texts.join("\n\n");
  if (text.length === 0) throw new DataError(`${path}: no text (column "${field}" is empty)`);
  return text;
}

/** One dataset row before batching. */
export interface Row {
  /** Token ids, special tokens included. */
  ids: ArrayLike<number>;
  /** Token type ids (pair tasks), same length as ids. */
  typeIds?: ArrayLike<number>;
  /** A class id (classification) or one target id per position, −100 where none (causal LM). */
  label: number | ArrayLike<number>;
}

/** What {@link BatchIterator} draws rows from. */
export interface Dataset {
  /** Rows in the dataset. */
  readonly size: number;
  /** Token id written into padding (masked out). */
  readonly padId: number;
  /** Row `index` (0-based); an index outside the dataset is a RangeError. */
  row(index: number): Row;
}

/** Label id that losses ignore (PyTorch's ignore_index). */
export const IGNORE_INDEX: number = -100;

/** Options of {@link ClassificationDataset}. */
export interface ClassificationDatasetOptions {
  /** Longest row in tokens, special tokens included (the model's positions, or less). */
  maxLength: number;
  /**
   * Cut longer rows to maxLength keeping the special tokens; pairs lose tokens from the end
   * of the longer text first (the second on ties), as transformers' "longest_first".
   * Default true; when false a longer row is an error.
   */
  truncation?: boolean;
  /** The head's num_labels: labels are checked against it when given. */
  numLabels?: number;
}

/**
 * Classification examples tokenized on first use (each row once, then cached). Pairs are
 * encoded with the tokenizer's pair template and carry token type ids.
 */
export class ClassificationDataset implements Dataset {
  /** The tokenizer's padding id. */
  readonly padId: number;
  /** Longest row in tokens, special tokens included. */
  readonly maxLength: number;
  private readonly truncation: boolean;
  private readonly cache: (Row | undefined)[];

  /**
   * A dataset of `examples` tokenized with `tokenizer`. A bad maxLength is a RangeError; no
   * examples, or a label that does not fit `numLabels`, is a DataError.
   */
  constructor(
    readonly examples: readonly Example[],
    private readonly tokenizer: Tokenizer,
    opts: ClassificationDatasetOptions,
  ) {
    if (!(Number.isInteger(opts.maxLength) && opts.maxLength >= 1)) {
      throw new RangeError(`ClassificationDataset: maxLength must be an integer ≥ 1, got ${opts.maxLength}`);
    }
    if (examples.length === 0) throw new DataError(`ClassificationDataset: no examples`);
    if (opts.numLabels !== undefined) checkLabels(examples, opts.numLabels, "ClassificationDataset");
    this.padId = tokenizer.padId;
    this.maxLength = opts.maxLength;
    this.truncation = opts.truncation ?? true;
    this.cache = new Array(examples.length);
  }

  /** Examples in the dataset. */
  get size(): number {
    return this.examples.length;
  }

  /** Row `index`, tokenized (and truncated) on first use; a longer row without truncation is a DataError. */
  row(index: number): Row {
    checkIndex(index, this.size);
    return this.cache[index] ??= this.encode(index);
  }

  /** Tokenize example `index` into a row, truncated to maxLength when allowed. */
  private encode(index: number): Row {
    const { text, pair, label } = this.examples[index];
    const tok = this.tokenizer;
    const full = pair === undefined
      ? { ids: tok.encode(text), typeIds: undefined }
      : tok.encodePair(text, pair);
    const toRow = (ids: number[], typeIds?: number[]): Row => ({
      ids: Int32Array.from(ids),
      typeIds: typeIds && Int32Array.from(typeIds),
      label,
    });
    if (full.ids.length <= this.maxLength) return toRow(full.ids, full.typeIds);
    if (!this.truncation) {
      throw new DataError(
        `example ${index} has ${full.ids.length} tokens, more than maxLength ${this.maxLength} (enable truncation)`,
      );
    }
    const parts = [text, ...(pair === undefined ? [] : [pair])]
      .map((t) => tok.encode(t, { addSpecialTokens: false }));
    const at = locate(full.ids, parts);
    if (at === null) {
      throw new DataError(
        `example ${index}: cannot truncate: the tokenizer's template changes the text's tokens`,
      );
    }
    const lengths = parts.map((p) => p.length);
    const special = full.ids.length - sum(lengths);
    const keep = longestFirst(lengths, this.maxLength - special);
    if (keep === null) {
      throw new DataError(
        `example ${index}: maxLength ${this.maxLength} leaves no room for the ${special} special tokens`,
      );
    }
    const cutOut = (seq: number[]) => {
      const pieces: number[][] = [];
      let from = 0;
      at.forEach((start, k) => {
        pieces.push(seq.slice(from, start + keep[k]));
        from = start + parts[k].length;
      });
      return pieces.concat([seq.slice(from)]).flat();
    };
    return toRow(cutOut(full.ids), full.typeIds && cutOut(full.typeIds));
  }
}

/** Start of each of `parts`, found in order in `seq`, or null. */
function locate(seq: readonly number[], parts: readonly number[][]): number[] | null {
  const starts: number[] = [];
  let from = 0;
  for (const part of parts) {
    let found = -1;
    for (let s = from; s + part.length <= seq.length && found < 0; s++) {
      if (part.every((id, j) => seq[s + j] === id)) found = s;
    }
    if (found < 0) return null;
    starts.push(found);
    from = found + part.length;
  }
  return starts;
}

/** Lengths after removing tokens one at a time from the longest part (the later one on ties), or null. */
function longestFirst(lengths: number[], budget: number): number[] | null {
  if (budget < 0) return null;
  const keep = [...lengths];
  let total = sum(keep);
  while (total > budget) {
    let k = 0;
    for (let j = 1; j < keep.length; j++) if (keep[j] >= keep[k]) k = j;
    keep[k]--;
    total--;
  }
  return keep;
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

function checkIndex(index: number, size: number): void {
  if (!(Number.isInteger(index) && index >= 0 && index < size)) {
    throw new RangeError(`row ${index} is outside the dataset (rows 0..${size - 1})`);
  }
}

/** Options of {@link CausalLmDataset}. */
export interface CausalLmOptions {
  /**
   * The tokens after the last full window: "drop" them (default), or "pad" them into one more,
   * shorter window (kept when it predicts at least one token).
   */
  partial?: "drop" | "pad";
  /**
   * Tokens between window starts (default seqLen). A stride of seqLen + 1 gives disjoint
   * windows, as the gpt2-brown held-out evaluation used (128-id windows at 0, 128, …: seqLen
   * 127, stride 128).
   */
  stride?: number;
  /** Names the token source in errors (e.g. the file path). */
  source?: string;
}

/**
 * Next-token training windows over one long token sequence: window k covers the seqLen + 1
 * tokens from s = k·stride (stride defaults to seqLen: windows start at 0, seqLen, 2·seqLen, …
 * and overlap by one token), giving inputs tokens[s, s + seqLen) and labels
 * tokens[s + 1, s + seqLen + 1) (the inputs shifted by one; −100 where a padded window has no
 * next token).
 */
export class CausalLmDataset implements Dataset {
  /** Windows in the dataset. */
  readonly size: number;
  /** Tokens between window starts. */
  readonly stride: number;

  /**
   * Windows of `seqLen` input tokens over `tokens`, padded with `padId`. A bad seqLen or
   * stride is a RangeError; too few tokens for one window is a DataError.
   */
  constructor(
    readonly tokens: Int32Array,
    readonly seqLen: number,
    readonly padId: number,
    opts: CausalLmOptions = {},
  ) {
    if (!(Number.isInteger(seqLen) && seqLen >= 1)) {
      throw new RangeError(`CausalLmDataset: seqLen must be an integer ≥ 1, got ${seqLen}`);
    }
    const stride = opts.stride ?? seqLen;
    if (!(Number.isInteger(stride) && stride >= 1)) {
      throw new RangeError(`CausalLmDataset: stride must be an integer ≥ 1, got ${stride}`);
    }
    this.stride = stride;
    const n = tokens.length;
    const full = n > seqLen ? Math.floor((n - seqLen - 1) / stride) + 1 : 0;
    const rest = n - full * stride; // tokens from the start of the next window
    this.size = full + (opts.partial === "pad" && rest >= 2 ? 1 : 0);
    if (this.size === 0) {
      throw new DataError(
        `${opts.source ?? "CausalLmDataset"}: ${n} tokens make no training window of seqLen + 1 = ${
          seqLen + 1
        } tokens` + (opts.partial === "pad" ? "" : ` (use a shorter seqLen or partial: "pad")`),
      );
    }
  }

  /**
   * Read a plain-text file, tokenize the whole text once (with the tokenizer's special tokens,
   * as `tokenizer.encode`) and cut it into windows.
   */
  static async fromTextFile(
    path: string,
    tokenizer: Tokenizer,
    seqLen: number,
    opts: CausalLmOptions = {},
  ): Promise<CausalLmDataset> {
    const ids = Int32Array.from(tokenizer.encode(await readTextFile(path)));
    return new CausalLmDataset(ids, seqLen, tokenizer.padId, { source: path, ...opts });
  }

  /** Window `index`: its input ids and next-token labels. */
  row(index: number): Row {
    checkIndex(index, this.size);
    const s = index * this.stride, n = this.tokens.length;
    const ids = this.tokens.subarray(s, Math.min(s + this.seqLen, n));
    const label = new Int32Array(ids.length);
    for (let t = 0; t < ids.length; t++) label[t] = s + t + 1 < n ? this.tokens[s + t + 1] : IGNORE_INDEX;
    return { ids, label };
  }
}

/** A padded batch, row-major [batch, seq]. */
export interface TrainBatch {
  /** [batch, seq] token ids, the pad id at padding. */
  ids: Int32Array;
  /** 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  /** Classification: [batch] class ids. Causal LM: [batch, seq] next-token ids, −100 at padding. */
  labels: Int32Array;
  /** [batch, seq] token type ids, present when the rows have them (pair tasks); 0 at padding. */
  tokenTypeIds?: Int32Array;
  /** [batch, seq]: rows and tokens per row. */
  shape: [number, number];
  /** The dataset index of each row. */
  rows: Int32Array;
}

/**
 * Pad the rows `indices` of `dataset` on the right into one batch: to the longest row, or to
 * `padTo` tokens when given (a longer row is then an error).
 */
export function collate(dataset: Dataset, indices: ArrayLike<number>, padTo?: number): TrainBatch {
  if (indices.length === 0) throw new RangeError(`collate: no rows`);
  const rows = Array.from(indices, (i) => dataset.row(i));
  const longest = Math.max(...rows.map((r) => r.ids.length));
  if (padTo !== undefined && !(Number.isInteger(padTo) && padTo >= 1)) {
    throw new RangeError(`collate: padTo must be an integer ≥ 1, got ${padTo}`);
  }
  if (padTo !== undefined && longest > padTo) {
    throw new RangeError(`collate: a row has ${longest} tokens, more than padTo ${padTo}`);
  }
  const b = rows.length, len = padTo ?? longest;
  const ids = new Int32Array(b * len).fill(dataset.padId);
  const attentionMask = new Int32Array(b * len);
  const perToken = typeof rows[0].label !== "number";
  const labels = perToken ? new Int32Array(b * len).fill(IGNORE_INDEX) : new Int32Array(b);
  const withTypes = rows.some((r) => r.typeIds !== undefined);
  const tokenTypeIds = withTypes ? new Int32Array(b * len) : undefined;
  rows.forEach((r, i) => {
    ids.set(r.ids, i * len);
    attentionMask.fill(1, i * len, i * len + r.ids.length);
    if (r.typeIds) tokenTypeIds!.set(r.typeIds, i * len);
    if (typeof r.label === "number") {
      if (perToken) throw new TypeError(`collate: rows mix class labels and per-token labels`);
      labels[i] = r.label;
    } else {
      if (!perToken) throw new TypeError(`collate: rows mix class labels and per-token labels`);
      labels.set(r.label, i * len);
    }
  });
  const batch: TrainBatch = { ids, attentionMask, labels, shape: [b, len], rows: Int32Array.from(indices) };
  if (tokenTypeIds) batch.tokenTypeIds = tokenTypeIds;
  return batch;
}

/** Where a run is: the batch `step` (0-based) of `epoch` (0-based) is the next to train on. */
export interface Position {
  /** The epoch, 0-based. */
  epoch: number;
  /** The batch within the epoch, 0-based. */
  step: number;
}

/** Options of {@link BatchIterator}. */
export interface BatchIteratorOptions {
  /** Rows per batch. */
  batchSize: number;
  /** Shuffling seed, an integer in [0, 2^32) (default 0). */
  seed?: number;
  /** Shuffle each epoch (default true); otherwise rows come in dataset order. */
  shuffle?: boolean;
  /** Drop the last, smaller batch of each epoch (default false). */
  dropLast?: boolean;
  /** Pad every batch to this many tokens instead of the longest row in it. */
  padTo?: number;
}

const TWO_32 = 4294967296;

/** MurmurHash3's 32-bit finalizer: a bijection on uint32 that spreads every input bit. */
function fmix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Batches of a dataset, epoch after epoch. The order of epoch e is a pure function of
 * (seed, e), so any (epoch, step) can be produced directly and a resumed run gets exactly the
 * batches an uninterrupted one would. The order is Fisher–Yates on the row indices 0..n−1,
 * driven by `new Prng((seed ^ fmix32(e)) >>> 0)` (lib/spectral/prng.ts; fmix32 is MurmurHash3's
 * 32-bit finalizer, so epoch 0 uses Prng(seed) and each epoch gets a different seed): for
 * i = n−1 down to 1, swap i with `below(i + 1)`. Batch k of an epoch holds order[k·B, (k+1)·B).
 */
export class BatchIterator {
  /** Rows per batch. */
  readonly batchSize: number;
  /** Shuffling seed. */
  readonly seed: number;
  /** Whether each epoch is shuffled. */
  readonly shuffle: boolean;
  /** Whether the last, smaller batch of each epoch is dropped. */
  readonly dropLast: boolean;
  /** Tokens every batch is padded to; undefined pads to the longest row in the batch. */
  readonly padTo: number | undefined;
  /** Batches per epoch. */
  readonly stepsPerEpoch: number;
  private cached: { epoch: number; order: Int32Array } | null = null;

  /**
   * Batches of `dataset` (see {@link BatchIteratorOptions}). A bad batch size or seed is a
   * RangeError; no batch at all (dropLast with fewer rows than batchSize) is a DataError.
   */
  constructor(readonly dataset: Dataset, opts: BatchIteratorOptions) {
    const { batchSize, seed = 0, shuffle = true, dropLast = false, padTo } = opts;
    if (!(Number.isInteger(batchSize) && batchSize >= 1)) {
      throw new RangeError(`BatchIterator: batchSize must be an integer ≥ 1, got ${batchSize}`);
    }
    if (!(Number.isInteger(seed) && seed >= 0 && seed < TWO_32)) {
      throw new RangeError(`BatchIterator: seed must be an integer in [0, 2^32), got ${seed}`);
    }
    const steps = dropLast ? Math.floor(dataset.size / batchSize) : Math.ceil(dataset.size / batchSize);
    if (steps === 0) {
      throw new DataError(
        `BatchIterator: ${dataset.size} rows make no full batch of ${batchSize} (lower batchSize or keep the last batch)`,
      );
    }
    this.batchSize = batchSize;
    this.seed = seed;
    this.shuffle = shuffle;
    this.dropLast = dropLast;
    this.padTo = padTo;
    this.stepsPerEpoch = steps;
  }

  /** Rows in the dataset. */
  get size(): number {
    return this.dataset.size;
  }

  /** The row order of `epoch` (a permutation of 0..size−1). */
  order(epoch: number): Int32Array {
    if (!(Number.isInteger(epoch) && epoch >= 0 && epoch < TWO_32)) {
      throw new RangeError(`BatchIterator: epoch must be an integer in [0, 2^32), got ${epoch}`);
    }
    if (this.cached?.epoch === epoch) return this.cached.order;
    const n = this.dataset.size;
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    if (this.shuffle) {
      const prng = new Prng((this.seed ^ fmix32(epoch)) >>> 0);
      for (let i = n - 1; i >= 1; i--) {
        const j = prng.below(i + 1);
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
    }
    this.cached = { epoch, order };
    return order;
  }

  /** The batch at `position`. */
  batch({ epoch, step }: Position): TrainBatch {
    if (!(Number.isInteger(step) && step >= 0 && step < this.stepsPerEpoch)) {
      throw new RangeError(
        `BatchIterator: step must be an integer in [0, ${this.stepsPerEpoch}), got ${step}`,
      );
    }
    const order = this.order(epoch);
    return collate(
      this.dataset,
      order.subarray(step * this.batchSize, (step + 1) * this.batchSize),
      this.padTo,
    );
  }

  /** The position after `position`. */
  next({ epoch, step }: Position): Position {
    return step + 1 < this.stepsPerEpoch ? { epoch, step: step + 1 } : { epoch: epoch + 1, step: 0 };
  }

  /** The position of the `globalStep`-th batch counted from the start (0-based). */
  positionAt(globalStep: number): Position {
    if (!(Number.isInteger(globalStep) && globalStep >= 0)) {
      throw new RangeError(`BatchIterator: globalStep must be an integer ≥ 0, got ${globalStep}`);
    }
    return { epoch: Math.floor(globalStep / this.stepsPerEpoch), step: globalStep % this.stepsPerEpoch };
  }

  /**
   * Batches from `from` (default the start) to the end of epoch `epochs − 1` (default: no
   * end), each with its position. To resume, pass the position after the last batch trained.
   */
  *batches(
    from: Position = { epoch: 0, step: 0 },
    epochs = Infinity,
  ): Generator<{ epoch: number; step: number; batch: TrainBatch }> {
    for (let pos = from; pos.epoch < epochs; pos = this.next(pos)) {
      yield { ...pos, batch: this.batch(pos) };
    }
  }
}
