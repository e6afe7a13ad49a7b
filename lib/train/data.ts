/**
 * Training rows and batches: tokenized classification examples and causal-LM windows, padded
 * batches, and a seeded, resumable, epoch-aware batch iterator over either (the files they come
 * from are read by lib/train/readers.ts).
 *
 * ```ts
 * import { readClassificationFile } from "./readers.ts";
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
import { Prng } from "../spectral/prng.ts";
import {
  checkLabelLists,
  checkLabels,
  DataError,
  type Example,
  exampleName,
  isPlainText,
  readTextDocuments,
} from "./readers.ts";

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

/** What {@link BatchIterator} draws rows from. */
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

export { IGNORE_INDEX };

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

/**
 * The tokens of a causal LM's documents, one after another: each document tokenized on its own with
 * the tokenizer's special tokens (LLaMA's BOS starts each), as transformers' run_clm.py tokenizes its
 * records before it concatenates and chunks them; with `lines` (plain-text files, which the
 * `datasets` text loader reads a line a record, line breaks kept) each line of a document is such a
 * record. A tokenizer that adds none (GPT-2's) would run the documents into each other: they are
 * joined by a blank line and tokenized as one text instead, or, where the tokenizer library cannot
 * take that text as one piece ({@link TextTooLongError}: a pre-tokenizer that does not split it), a
 * line at a time, as run_clm.py's records.
 */
export function documentTokens(
  documents: readonly string[],
  tokenizer: Tokenizer,
  opts: { lines?: boolean } = {},
): Int32Array {
  const [before, after] = tokenizer.specialAround();
  const byLine = (texts: readonly string[]) => texts.flatMap((text) => text.split(/(?<=\n)/));
  let records = opts.lines ? byLine(documents) : documents;
  if (before.length + after.length === 0) {
    const joined = documents.join("\n\n");
    try {
      return Int32Array.from(tokenizer.encode(joined));
    } catch (e) {
      if (!(e instanceof TextTooLongError)) throw e;
      records = byLine([joined]);
    }
  }
  const ids: number[] = [];
  for (const text of records) for (const id of tokenizer.encode(text)) ids.push(id);
  return Int32Array.from(ids);
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
   * ({@link documentTokens}) and cut the tokens into windows.
   */
  static async fromTextFile(
    path: string,
    tokenizer: Tokenizer,
    seqLen: number,
    opts: CausalLmOptions = {},
  ): Promise<CausalLmDataset> {
    const ids = documentTokens(await readTextDocuments(path), tokenizer, { lines: isPlainText(path) });
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
  /**
   * Classification: [batch] class ids (regression: real values, as floats). Causal LM:
   * [batch, seq] next-token ids, −100 at padding.
   */
  labels: Int32Array | Float32Array;
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
  const multi = dataset.multiLabels;
  const perToken = multi === undefined && typeof rows[0].label !== "number";
  const labels = multi !== undefined
    ? new Float32Array(b * multi)
    : perToken
    ? new Int32Array(b * len).fill(IGNORE_INDEX)
    : dataset.regression
    ? new Float32Array(b)
    : new Int32Array(b);
  const withTypes = rows.some((r) => r.typeIds !== undefined);
  const tokenTypeIds = withTypes ? new Int32Array(b * len) : undefined;
  rows.forEach((r, i) => {
    ids.set(r.ids, i * len);
    attentionMask.fill(1, i * len, i * len + r.ids.length);
    if (r.typeIds) tokenTypeIds!.set(r.typeIds, i * len);
    if (multi !== undefined) labels.set(r.label as ArrayLike<number>, i * multi);
    else if (typeof r.label === "number") {
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
  /**
   * Batch rows of similar length together, for less padding (transformers' group_by_length):
   * each shuffled epoch is cut into groups of {@link LENGTH_GROUP_BATCHES} batches, each group
   * sorted by length (longest first) and cut into batches, and the batches shuffled (when
   * `shuffle`), the longest one first so that a run too large for memory fails at once. Default
   * false.
   */
  groupByLength?: boolean;
}

/** Batches per group that {@link BatchIteratorOptions.groupByLength} sorts by length (as transformers' 50). */
export const LENGTH_GROUP_BATCHES = 50;

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
  /** Whether batches hold rows of similar length. */
  readonly groupByLength: boolean;
  /** Batches per epoch. */
  readonly stepsPerEpoch: number;
  private cached: { epoch: number; order: Int32Array } | null = null;
  private lengths: Int32Array | null = null;

  /**
   * Batches of `dataset` (see {@link BatchIteratorOptions}). A bad batch size or seed is a
   * RangeError; no batch at all (dropLast with fewer rows than batchSize) is a DataError.
   */
  constructor(readonly dataset: Dataset, opts: BatchIteratorOptions) {
    const { batchSize, seed = 0, shuffle = true, dropLast = false, padTo, groupByLength = false } = opts;
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
    this.groupByLength = groupByLength;
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
    const grouped = this.groupByLength ? this.byLength(order, epoch) : order;
    this.cached = { epoch, order: grouped };
    return grouped;
  }

  /** `order` regrouped into batches of similar length ({@link BatchIteratorOptions.groupByLength}). */
  private byLength(order: Int32Array, epoch: number): Int32Array {
    this.lengths ??= Int32Array.from({ length: this.dataset.size }, (_, i) => this.dataset.row(i).ids.length);
    const lengths = this.lengths, b = this.batchSize, group = b * LENGTH_GROUP_BATCHES;
    const batches: number[][] = [];
    for (let g = 0; g < order.length; g += group) {
      const rows = Array.from(order.subarray(g, g + group)).sort((x, y) => lengths[y] - lengths[x] || x - y);
      for (let k = 0; k < rows.length; k += b) batches.push(rows.slice(k, k + b));
    }
    // a last, smaller batch stays last (dropLast drops it); the others are shuffled, the longest first
    const full = batches.length - (order.length % b === 0 ? 0 : 1);
    if (this.shuffle) {
      const prng = new Prng((this.seed ^ fmix32(epoch) ^ 0x9e3779b9) >>> 0);
      for (let i = full - 1; i >= 1; i--) {
        const j = prng.below(i + 1);
        [batches[i], batches[j]] = [batches[j], batches[i]];
      }
    }
    const longest = (rows: number[]) => Math.max(...rows.map((r) => lengths[r]));
    let first = 0;
    for (let i = 1; i < full; i++) if (longest(batches[i]) > longest(batches[first])) first = i;
    [batches[0], batches[first]] = [batches[first], batches[0]];
    return Int32Array.from(batches.flat());
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

/** A 0/1 row of `count` floats with a 1 at each of `ids`. */
function multiHot(ids: readonly number[], count: number): Float32Array {
  const row = new Float32Array(count);
  for (const id of ids) row[id] = 1;
  return row;
}
