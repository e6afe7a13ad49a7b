/**
 * Training rows: datasets of tokenized classification examples and of causal-LM windows (the
 * files they come from are read by lib/train/readers.ts; lib/train/batches.ts pads their rows
 * into batches).
 *
 * ```ts
 * import { readClassificationFile } from "./readers.ts";
 * import { BatchIterator } from "./batches.ts";
 * import type { HfConfig } from "../io/hf_config.ts";
 * import type { Tokenizer } from "../io/tokenizer.ts";
 * declare const config: HfConfig, tokenizer: Tokenizer;
 * const data = await readClassificationFile("train.csv", { labels: config.labels });
 * const dataset = new ClassificationDataset(data.examples, tokenizer, { maxLength: 128 });
 * const batches = new BatchIterator(dataset, { batchSize: 16, seed: 0 });
 * for (const { epoch, step, batch } of batches.batches({ epoch: 0, step: 0 }, 3)) console.log(epoch, step, batch);
 * ```
 * @module
 */
import { TextTooLongError, type Tokenizer } from "../io/tokenizer.ts";
import { IGNORE_INDEX } from "../tensor/mod.ts";
import {
  checkPlainText,
  type Example,
  isPlainText,
  joinDocuments,
  MAX_STRING_LENGTH,
  readTextChunks,
  readTextDocuments,
} from "./readers.ts";
import { DataError } from "./data_error.ts";
import { checkLabelLists, checkLabels, exampleName } from "./labels.ts";
import { canTokenizeOnWorkers, InOrder, recipeOf, tokenizeOnWorkers } from "./tokenizing_pool.ts";

/** One dataset row before batching. */
export interface Row {
  /** Token ids, special tokens included. */
  ids: ArrayLike<number>;
  /** Token type ids (pair tasks), same length as ids. */
  typeIds?: ArrayLike<number>;
  /**
   * A class id (classification), one 0/1 entry per label (multi-label classification), or one
   * target id per position, −100 where none (causal LM).
   */
  label: number | ArrayLike<number>;
}

/** What a BatchIterator (lib/train/batches.ts) draws rows from. */
export interface Dataset {
  /** Rows in the dataset. */
  readonly size: number;
  /** Token id written into padding (masked out). */
  readonly padId: number;
  /** Row labels are real values (regression): batches carry them as floats. */
  readonly regression?: boolean;
  /** Multi-label classification: the label count; rows carry 0/1 per label, batches as floats. */
  readonly multiLabels?: number;
  /** Row `index` (0-based); an index outside the dataset is a RangeError. */
  row(index: number): Row;
}

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
  /** The labels are real values (regression): batches carry them as floats, unchecked. */
  regression?: boolean;
  /**
   * Multi-label classification: each example's `labels` (ids below `numLabels`, which must be
   * given) become a 0/1 row of numLabels floats.
   */
  multiLabel?: boolean;
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
  /** The labels are real values (regression). */
  readonly regression: boolean;
  /** Multi-label classification: the label count (see {@link ClassificationDatasetOptions.multiLabel}). */
  readonly multiLabels?: number;
  private readonly truncation: boolean;
  private readonly cache: (Row | undefined)[];

  /**
   * A dataset of `examples` tokenized with `tokenizer`. A bad maxLength is a RangeError; no
   * examples, a label that does not fit `numLabels`, or an empty text that this tokenizer makes
   * no token of (checked here), is a DataError. Errors name an example by its file and line when
   * it has them ({@link Example.source}).
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
    this.regression = opts.regression ?? false;
    if (opts.multiLabel) {
      if (opts.numLabels === undefined) {
        throw new RangeError(`ClassificationDataset: multiLabel needs numLabels`);
      }
      this.multiLabels = opts.numLabels;
      checkLabelLists(examples, opts.numLabels, "ClassificationDataset");
    } else if (opts.numLabels !== undefined && !this.regression) {
      checkLabels(examples, opts.numLabels, "ClassificationDataset");
    }
    this.padId = tokenizer.padId;
    this.maxLength = opts.maxLength;
    this.truncation = opts.truncation ?? true;
    this.cache = new Array(examples.length);
    // a row of an empty text may have no tokens: refused now, not when training first reaches it
    for (let i = 0; i < examples.length; i++) if (examples[i].text === "") this.row(i);
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
    const example = this.examples[index], name = exampleName(example, index);
    const { text, pair, label: id, labels } = example;
    const label = this.multiLabels === undefined ? id : multiHot(labels!, this.multiLabels);
    const tok = this.tokenizer;
    const full = pair === undefined
      ? { ids: tok.encode(text), typeIds: undefined }
      : tok.encodePair(text, pair);
    if (full.ids.length === 0) {
      // a tokenizer without special tokens (GPT-2's) makes nothing of an empty text: no row to read
      throw new DataError(
        `${name} has no tokens: its text is ${JSON.stringify(text)}, and this tokenizer adds no ` +
          `special tokens; leave out rows without text`,
      );
    }
    const toRow = (ids: number[], typeIds?: number[]): Row => ({
      ids: Int32Array.from(ids),
      typeIds: typeIds && Int32Array.from(typeIds),
      label,
    });
    if (full.ids.length <= this.maxLength) return toRow(full.ids, full.typeIds);
    if (!this.truncation) {
      throw new DataError(
        `${name} has ${full.ids.length} tokens, more than maxLength ${this.maxLength} (enable truncation)`,
      );
    }
    const parts = [text, ...(pair === undefined ? [] : [pair])]
      .map((t) => tok.encode(t, { addSpecialTokens: false }));
    const at = locate(full.ids, parts);
    if (at === null) {
      throw new DataError(
        `${name} cannot be truncated: the tokenizer's template changes the text's tokens`,
      );
    }
    const lengths = parts.map((p) => p.length);
    const special = full.ids.length - sum(lengths);
    const keep = longestFirst(lengths, this.maxLength - special);
    if (keep === null) {
      throw new DataError(
        `${name} cannot be truncated: maxLength ${this.maxLength} leaves no room for the ${special} special tokens`,
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

/**
 * Lengths after cutting to `budget` tokens, the longest first, or null. Two parts as Hugging Face's
 * fast tokenizers cut a pair (`longest_first`): the shorter keeps its length when the longer can
 * still keep as many, else both get half, the odd token going to the longer (the second on ties).
 * Otherwise tokens go one at a time from the longest part (the later one on ties).
 */
function longestFirst(lengths: number[], budget: number): number[] | null {
  if (budget < 0) return null;
  if (lengths.length === 2 && sum(lengths) > budget) {
    const [a, b] = lengths, swap = a > b;
    let short = swap ? b : a, long = short > budget ? short : Math.max(short, budget - short);
    if (short + long > budget) {
      [short, long] = [Math.floor(budget / 2), Math.floor(budget / 2) + (budget % 2)];
    }
    return swap ? [long, short] : [short, long];
  }
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

/** Throw a RangeError unless `index` is a row of a dataset of `size` rows. */
export function checkIndex(index: number, size: number): void {
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

/** Options of {@link documentTokens}. */
export interface DocumentTokenOptions {
  /** Each line of a document is a record (plain-text files, which `datasets`' text loader reads so). */
  lines?: boolean;
  /**
   * Called as the tokenizing goes on (every few hundred thousand characters, and once at the end)
   * with the characters tokenized and those there are: a large file takes minutes. (Text that
   * cannot be taken as one piece starts again from 0, a line at a time.)
   */
  onProgress?: (done: number, total: number) => void;
  /**
   * Whether text of {@link POOLED_CHARS} characters or more is encoded on the tokenizing workers
   * (lib/train/tokenizing_pool.ts), to the same ids (default true; false: in this thread).
   */
  workers?: boolean;
}

/**
 * The tokens of a causal LM's documents, one after another: each document tokenized on its own with
 * the tokenizer's special tokens (LLaMA's BOS starts each), as transformers' run_clm.py tokenizes its
 * records before it concatenates and chunks them; with `lines` (plain-text files, which the
 * `datasets` text loader reads a line a record, line breaks kept) each line of a document is such a
 * record. A tokenizer that adds none (GPT-2's) would run the documents into each other: they are
 * joined by a blank line ({@link joinDocuments}: none after a record that ends in a line break, as
 * wikitext's do, so that those read as run_clm.py concatenates them) and tokenized as one text
 * instead (a megabyte at a time, to the ids of the whole), or, where the tokenizer library cannot
 * take that text as one piece ({@link TextTooLongError}: a pre-tokenizer that does not split it), a
 * line at a time, as run_clm.py's records.
 */
export async function documentTokens(
  documents: readonly string[],
  tokenizer: Tokenizer,
  opts: DocumentTokenOptions = {},
): Promise<Int32Array> {
  const [before, after] = tokenizer.specialAround();
  let records: Iterable<string> = opts.lines ? linesOf(documents) : documents;
  let total = documents.reduce((n, doc) => n + doc.length, 0);
  if (before.length + after.length === 0) {
    const joined = joinDocuments(documents);
    try {
      return await encodeAsOne(joined, tokenizer, opts);
    } catch (e) {
      if (!(e instanceof TextTooLongError)) throw e;
      records = linesOf([joined]);
      total = joined.length;
    }
  }
  const progress = new CharProgress(total, opts.onProgress);
  const pooled = opts.workers !== false && total >= POOLED_CHARS;
  const ids = new Encoding(tokenizer, pooled, (chars) => progress.add(chars));
  for (const text of records) await ids.add(text);
  const done = await ids.done();
  progress.end();
  return done;
}

/** Options of {@link textFileTokens}. */
export interface TextFileTokenOptions {
  /** As {@link readTextDocuments}' (refused: plain text has no fields). */
  textField?: string;
  /**
   * Called as the tokenizing goes on with the bytes of the file read and those there are (a file
   * tokenized again another way, see {@link textFileTokens}, starts again from 0).
   */
  onProgress?: (done: number, total: number) => void;
  /** Bytes read at a time (default 1 MiB). */
  chunkBytes?: number;
  /** As {@link DocumentTokenOptions.workers}, for a file of {@link POOLED_CHARS} bytes or more. */
  workers?: boolean;
  /**
   * The largest file that is read whole where it must be tokenized as one text (default
   * {@link MAX_STRING_LENGTH}, what a string holds; less in tests).
   */
  wholeBytes?: number;
}

/**
 * The tokens of a plain-text file: the ids {@link documentTokens} gives for its text read a line a
 * record, but read and tokenized a chunk at a time, so that memory holds the ids and a few
 * megabytes of text, never the whole text (which no string holds past 2^29 − 24 characters,
 * 512 MiB of ASCII: pretraining corpora are larger). A tokenizer that adds special tokens takes a
 * line at a time; one that adds none the pieces {@link encodeAsOne} cuts the text into, each cut
 * checked ({@link cutHolds}) as it is reached. Where documentTokens would do otherwise (no cut
 * holding at any of {@link CUT_TRIES} line breaks in a row: the rest of the text is encoded whole;
 * a piece the library cannot take, TextTooLongError: a line at a time), a file of up to
 * `wholeBytes` is read whole and given to documentTokens; a larger one is then tokenized a line at a
 * time after a TextTooLongError, and refused where no cut holds (as for a tokenizer that treats a
 * text's start apart), or where more text than a string holds has no line break to cut at.
 */
export async function textFileTokens(
  path: string,
  tokenizer: Tokenizer,
  opts: TextFileTokenOptions = {},
): Promise<Int32Array> {
  checkPlainText(path, opts.textField);
  const [before, after] = tokenizer.specialAround();
  if (before.length + after.length > 0) return await lineTokens(path, tokenizer, opts);
  try {
    return await pieceTokens(path, tokenizer, opts);
  } catch (e) {
    if (!(e instanceof UncutText || e instanceof TextTooLongError)) throw e;
    const size = (await Deno.stat(path)).size;
    if (size <= (opts.wholeBytes ?? MAX_STRING_LENGTH)) {
      const onProgress = opts.onProgress &&
        ((done: number, total: number) => opts.onProgress?.(Math.round(done / total * size), size)); // characters, as bytes
      return documentTokens(await readTextDocuments(path), tokenizer, {
        lines: true,
        onProgress,
        workers: opts.workers,
      });
    }
    if (e instanceof TextTooLongError) return await lineTokens(path, tokenizer, opts);
    throw new DataError(
      `${path}: ${size} bytes, more than is read as one text, so it is tokenized a piece at a time, ` +
        `cut at line breaks; but ${e.message} (${tokenizer.path}): split the file into smaller ones`,
    );
  }
}

/** Options of {@link fileTokens}. */
export interface FileTokenOptions {
  /** As {@link readTextDocuments}' (refused for plain text, which has no fields). */
  textField?: string;
  /**
   * Called as the tokenizing goes on: with the bytes read of a plain-text file
   * ({@link TextFileTokenOptions.onProgress}), the characters tokenized of records' texts
   * ({@link DocumentTokenOptions.onProgress}).
   */
  onProgress?: (done: number, total: number) => void;
}

/**
 * The tokens a causal LM trains on from `path`: a plain-text file's read a chunk at a time
 * ({@link textFileTokens}: it may be larger than a string holds), a record file's texts read whole
 * ({@link readTextDocuments}) and tokenized a record a document ({@link documentTokens}).
 */
export async function fileTokens(
  path: string,
  tokenizer: Tokenizer,
  opts: FileTokenOptions = {},
): Promise<Int32Array> {
  const { textField, onProgress } = opts;
  return isPlainText(path)
    ? await textFileTokens(path, tokenizer, { textField, onProgress })
    : documentTokens(await readTextDocuments(path, { textField }), tokenizer, { onProgress });
}

/** A text that {@link pieceTokens} cannot cut as {@link encodeAsOne} cuts it; the message says where. */
class UncutText extends Error {}

/**
 * The ids of a text file for a tokenizer without special tokens, in the pieces {@link encodeAsOne}
 * cuts it into, a chunk read at a time; an {@link UncutText} where a cut does not hold.
 */
async function pieceTokens(
  path: string,
  tokenizer: Tokenizer,
  opts: TextFileTokenOptions,
): Promise<Int32Array> {
  // made at the first chunk, which says the file's size
  let ids: Encoding | undefined;
  // the text read and not yet encoded (it starts a line), the line it starts, where its next cut may
  // be, the cuts passed over since the last one
  let text = "", line = 1, from = CHUNK_CHARS, misses = 0;
  // encodes the pieces before each cut whose seam has been read (at the file's end, all of them)
  const encodeCut = async (atEnd: boolean) => {
    for (let cut = nextCut(text, from); cut >= 0; cut = nextCut(text, from)) {
      if (!atEnd && text.indexOf("\n", cut) < 0 && text.length < cut + SEAM_CHARS) {
        from = cut - 1; // the line after the cut, as far as cutHolds reads it, is still to come
        return;
      }
      const lines = newlines(text, cut);
      if (!cutHolds(text, cut, tokenizer)) {
        if (++misses === CUT_TRIES) {
          throw new UncutText(
            `the text across each of the ${CUT_TRIES} line breaks before line ${
              line + lines
            } encodes otherwise`,
          );
        }
        from = cut;
        continue;
      }
      await ids!.add(text.slice(0, cut));
      text = text.slice(cut);
      line += lines;
      from = CHUNK_CHARS;
      misses = 0;
    }
    from = Math.max(from, text.length - 1);
  };
  let progress: CharProgress | undefined;
  for await (const chunk of readTextChunks(path, opts.chunkBytes)) {
    progress ??= new CharProgress(chunk.size, opts.onProgress);
    ids ??= new Encoding(tokenizer, pooledFile(chunk.size, opts));
    if (text.length + chunk.text.length > MAX_STRING_LENGTH) {
      throw new UncutText(
        `line ${line} begins more text than a string holds, with no line break followed by more text past ` +
          `its first ${CHUNK_CHARS} characters to cut it at`,
      );
    }
    text += chunk.text;
    await encodeCut(false);
    progress.add(chunk.bytes);
  }
  await encodeCut(true);
  ids ??= new Encoding(tokenizer, false);
  await ids.add(text);
  const done = await ids.done();
  progress?.end();
  return done;
}

/** The ids of a text file, each line encoded on its own (with its line break), a chunk read at a time. */
async function lineTokens(
  path: string,
  tokenizer: Tokenizer,
  opts: TextFileTokenOptions,
): Promise<Int32Array> {
  // rest: the start of a line still being read, line number `line`
  let rest = "", line = 1, progress: CharProgress | undefined, ids: Encoding | undefined;
  for await (const chunk of readTextChunks(path, opts.chunkBytes)) {
    progress ??= new CharProgress(chunk.size, opts.onProgress);
    ids ??= new Encoding(tokenizer, pooledFile(chunk.size, opts));
    const end = chunk.text.lastIndexOf("\n") + 1;
    if (end > 0) {
      for (const record of linesOf([rest + chunk.text.slice(0, end)])) {
        await ids.add(record);
        line++;
      }
      rest = "";
    }
    if (rest.length + chunk.text.length - end > MAX_STRING_LENGTH) {
      throw new DataError(
        `${path}: line ${line} is longer than the ${MAX_STRING_LENGTH} characters a string holds, and ` +
          `this tokenizer (${tokenizer.path}) adds special tokens, so it takes a line at a time: break the line`,
      );
    }
    rest += chunk.text.slice(end);
    progress.add(chunk.bytes);
  }
  ids ??= new Encoding(tokenizer, false);
  if (rest !== "") await ids.add(rest);
  const done = await ids.done();
  progress?.end();
  return done;
}

/** The line breaks in `text` before `end`. */
function newlines(text: string, end: number): number {
  let n = 0;
  for (let at = text.indexOf("\n"); at >= 0 && at < end; at = text.indexOf("\n", at + 1)) n++;
  return n;
}

/** The lines of each text, each with its line break (a text without one is one line; an empty one an empty line). */
function* linesOf(texts: readonly string[]): Generator<string> {
  for (const text of texts) {
    if (text === "") yield text;
    for (let at = 0; at < text.length;) {
      const end = text.indexOf("\n", at);
      const next = end < 0 ? text.length : end + 1;
      yield text.slice(at, next);
      at = next;
    }
  }
}

/** Characters of a one-piece text encoded at a time, about (see {@link encodeAsOne}). */
const CHUNK_CHARS = 1 << 20;

/** Characters on each side of a cut that {@link cutHolds} encodes, at most. */
const SEAM_CHARS = 256;

/** Line breaks tried in a row for a cut that holds before a text is taken to have none (see {@link encodeAsOne}). */
const CUT_TRIES = 16;

/**
 * The ids of `text` encoded as one piece, taken a chunk of about {@link CHUNK_CHARS} at a time: the
 * library holds every piece of a text it encodes at once, some 40 bytes a character (4 GB, V8's
 * limit, for 90 MB of text), and slows as they grow. A chunk ends after a line break (or a run of
 * them, CRLFs and blank lines), where a pre-tokenizer splits the text anyway; each cut is checked
 * first ({@link cutHolds}), one that does not hold is passed over for the next line break, and
 * where {@link CUT_TRIES} in a row do not hold (a normalizer or pre-tokenizer that treats a text's
 * start apart, as a prefix space does) the rest of the text is encoded whole.
 */
async function encodeAsOne(
  text: string,
  tokenizer: Tokenizer,
  opts: DocumentTokenOptions,
): Promise<Int32Array> {
  const cuts = chunkCuts(text, tokenizer);
  const progress = new CharProgress(text.length, opts.onProgress);
  const pooled = opts.workers !== false && text.length >= POOLED_CHARS;
  const ids = new Encoding(tokenizer, pooled, (chars) => progress.add(chars));
  let from = 0;
  for (const cut of [...cuts, text.length]) {
    await ids.add(text.slice(from, cut));
    from = cut;
  }
  const done = await ids.done();
  progress.end();
  return done;
}

/**
 * Where {@link encodeAsOne} cuts `text`: about every {@link CHUNK_CHARS} characters, at the first
 * place after a line break where the cut holds ({@link cutHolds}); none in a text shorter than that,
 * and none further on after {@link CUT_TRIES} places in a row where it does not.
 */
function chunkCuts(text: string, tokenizer: Tokenizer): number[] {
  const cuts: number[] = [];
  let misses = 0;
  for (let cut = nextCut(text, CHUNK_CHARS); cut >= 0 && misses < CUT_TRIES;) {
    if (cutHolds(text, cut, tokenizer)) {
      cuts.push(cut);
      misses = 0;
      cut = nextCut(text, cut + CHUNK_CHARS);
    } else {
      misses++;
      cut = nextCut(text, cut);
    }
  }
  return cuts;
}

/** Whether `c` ends a line: a line feed, or the carriage return of a CRLF (or of a CR alone). */
const isLineBreak = (c: string) => c === "\n" || c === "\r";

/** A line break, found from `lastIndex` on. */
const LINE_BREAK = /[\n\r]/g;

/**
 * The first place from `from` on where {@link chunkCuts} may cut `text`: after a line break (a line
 * feed, CRLF or a lone carriage return, as old Mac files end lines) and any after it (blank lines),
 * before the character that begins the next line that has one; −1 where there is none.
 */
function nextCut(text: string, from: number): number {
  LINE_BREAK.lastIndex = from;
  let at = LINE_BREAK.exec(text)?.index ?? -1;
  if (at < 0) return -1;
  while (at < text.length && isLineBreak(text[at])) at++;
  return at < text.length ? at : -1;
}

/**
 * Whether the text on each side of `cut` encodes to the ids of the two sides, one after the other:
 * the line before the cut with the line breaks after it, and the line after it (at most
 * {@link SEAM_CHARS} characters of each).
 */
function cutHolds(text: string, cut: number, tokenizer: Tokenizer): boolean {
  let lastChar = cut - 1; // of the line before the cut
  while (lastChar >= 0 && isLineBreak(text[lastChar])) lastChar--;
  const lineStart = lastChar < 0 ? 0 : text.lastIndexOf("\n", lastChar) + 1,
    lineEnd = text.indexOf("\n", cut);
  const left = text.slice(Math.max(lineStart, cut - SEAM_CHARS), cut);
  const right = text.slice(cut, Math.min(lineEnd < 0 ? text.length : lineEnd + 1, cut + SEAM_CHARS));
  const whole = tokenizer.encode(left + right);
  const parts = [...tokenizer.encode(left), ...tokenizer.encode(right)];
  return whole.length === parts.length && whole.every((id, i) => id === parts[i]);
}

/**
 * Token ids gathered into an Int32Array that grows as needed: 4 bytes an id, where an array of
 * numbers takes 8 or more and holds at most 2^27 of them (a 500 MB text has about that many tokens).
 */
class IdBuffer {
  #ids = new Int32Array(1 << 16);
  #length = 0;

  /** Add `ids` at the end. */
  push(ids: ArrayLike<number>): void {
    if (this.#length + ids.length > this.#ids.length) {
      const grown = new Int32Array(Math.max(2 * this.#ids.length, this.#length + ids.length));
      grown.set(this.#ids.subarray(0, this.#length));
      this.#ids = grown;
    }
    this.#ids.set(ids, this.#length);
    this.#length += ids.length;
  }

  /** The ids added, in an array of their own length. */
  done(): Int32Array {
    return this.#ids.slice(0, this.#length);
  }
}

/**
 * The characters of text from which it is encoded on the tokenizing workers (lib/train/tokenizing_pool.ts):
 * about a second of work on one core (3 µs a token), against the 0.1–0.5 s a worker takes to start
 * and load the tokenizer.
 */
export const POOLED_CHARS = 1 << 21;

/** Characters of texts a worker's job takes, at least (a piece of {@link encodeAsOne}'s is one job). */
const JOB_CHARS = 1 << 18;

/** Whether a file of `bytes` is encoded on the workers: one of {@link POOLED_CHARS} or more, unless told not to. */
function pooledFile(bytes: number, opts: TextFileTokenOptions): boolean {
  return opts.workers !== false && bytes >= POOLED_CHARS;
}

/**
 * Texts encoded one after another (each with the tokenizer's special tokens), their ids gathered in
 * order: here as each is added, or, `pooled`, on the tokenizing workers, in jobs of
 * {@link JOB_CHARS} characters and a few jobs a worker at once (the texts in them, a few megabytes,
 * are all that is held besides the ids). `onEncoded` is told the characters of each text as its
 * ids arrive. An error (as {@link TextTooLongError}) is thrown by the call that takes its job's
 * result: a later `add`, or `done`.
 */
class Encoding {
  #ids = new IdBuffer();
  #batch: string[] = [];
  #batchChars = 0;
  #running: InOrder<{ ids: Int32Array; chars: number }> | null;

  constructor(
    private readonly tokenizer: Tokenizer,
    pooled: boolean,
    private readonly onEncoded?: (chars: number) => void,
  ) {
    this.#running = pooled && canTokenizeOnWorkers(tokenizer) ? new InOrder() : null;
  }

  /** Encode `text` after those added before. */
  async add(text: string): Promise<void> {
    if (!this.#running) {
      this.#ids.push(this.tokenizer.encode(text));
      this.onEncoded?.(text.length);
      return;
    }
    this.#batch.push(text);
    this.#batchChars += text.length;
    if (this.#batchChars < JOB_CHARS) return;
    this.#submit();
    while (this.#running.full) await this.#take();
  }

  /** The ids of every text added. */
  async done(): Promise<Int32Array> {
    if (this.#running) {
      if (this.#batch.length > 0) this.#submit();
      while (this.#running.pending > 0) await this.#take();
    }
    return this.#ids.done();
  }

  #submit(): void {
    const texts = this.#batch, chars = this.#batchChars, tokenizer = this.tokenizer;
    [this.#batch, this.#batchChars] = [[], 0];
    const job = { kind: "texts" as const, recipe: recipeOf(tokenizer), texts };
    this.#running!.add(tokenizeOnWorkers(job, { tokenizer, template: null }).then((ids) => ({ ids, chars })));
  }

  async #take(): Promise<void> {
    const { ids, chars } = await this.#running!.next();
    this.#ids.push(ids);
    this.onEncoded?.(chars);
  }
}

/** Characters tokenized so far, passed on to an `onProgress` callback now and then (see {@link DocumentTokenOptions}). */
class CharProgress {
  #done = 0;
  /** The characters last said to be done; −1 before the first call. */
  #said = -1;

  constructor(readonly total: number, private readonly onProgress?: (done: number, total: number) => void) {}

  /** `chars` more were tokenized. */
  add(chars: number): void {
    this.#done += chars;
    if (this.#done - Math.max(this.#said, 0) >= PROGRESS_CHARS) this.#say();
  }

  /** All were tokenized. */
  end(): void {
    this.#done = this.total;
    if (this.#said !== this.total) this.#say();
  }

  #say(): void {
    this.#said = this.#done;
    this.onProgress?.(this.#done, this.total);
  }
}

/** Characters between two calls of an `onProgress` callback, at least. */
const PROGRESS_CHARS = 1 << 18;

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
        `${opts.source ?? "CausalLmDataset"}: ${n} tokens make no window of seqLen + 1 = ${
          seqLen + 1
        } tokens ` +
          `(lower --seq-len, the seqLen option${
            opts.partial === "pad" ? "" : `, or pad the last window: partial "pad"`
          })`,
      );
    }
  }

  /**
   * Read a plain-text file (one document) or the texts of a record file, tokenize them
   * ({@link fileTokens}) and cut the tokens into windows.
   */
  static async fromTextFile(
    path: string,
    tokenizer: Tokenizer,
    seqLen: number,
    opts: CausalLmOptions = {},
  ): Promise<CausalLmDataset> {
    const ids = await fileTokens(path, tokenizer);
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

/** A 0/1 row of `count` floats with a 1 at each of `ids`. */
function multiHot(ids: readonly number[], count: number): Float32Array {
  const row = new Float32Array(count);
  for (const id of ids) row[id] = 1;
  return row;
}
