/**
 * Batches of a {@link Dataset}'s rows: {@link collate} pads rows into one batch, and
 * {@link BatchIterator} gives a dataset's batches epoch after epoch, in a seeded order that is a
 * pure function of (seed, epoch), so a resumed run gets exactly the batches an uninterrupted one
 * would; optionally grouped by length for less padding.
 * @module
 */
import { IGNORE_INDEX } from "../tensor/mod.ts";
import { Prng } from "../spectral/prng.ts";
import type { Dataset } from "./data.ts";
import { DataError } from "./data_error.ts";

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
  /**
   * Called while groupByLength first measures the rows (which tokenizes every one of them: minutes
   * for some hundred thousand rows), every thousand rows and at the end, with the rows measured and
   * those there are.
   */
  onProgress?: (done: number, total: number) => void;
}

/** Batches per group that {@link BatchIteratorOptions.groupByLength} sorts by length (as transformers' 50). */
const LENGTH_GROUP_BATCHES = 50;

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
  private readonly onProgress?: (done: number, total: number) => void;

  /**
   * Batches of `dataset` (see {@link BatchIteratorOptions}). A bad batch size or seed is a
   * RangeError; no batch at all (dropLast with fewer rows than batchSize) is a DataError.
   */
  constructor(readonly dataset: Dataset, opts: BatchIteratorOptions) {
    const {
      batchSize,
      seed = 0,
      shuffle = true,
      dropLast = false,
      padTo,
      groupByLength = false,
      onProgress,
    } = opts;
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
    this.onProgress = onProgress;
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
    const lengths = this.lengths ??= this.rowLengths(), b = this.batchSize, group = b * LENGTH_GROUP_BATCHES;
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

  /** Every row's length in tokens, saying how far it got to {@link BatchIteratorOptions.onProgress}. */
  private rowLengths(): Int32Array {
    const n = this.dataset.size, lengths = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      lengths[i] = this.dataset.row(i).ids.length;
      if ((i + 1) % 1000 === 0 || i + 1 === n) this.onProgress?.(i + 1, n);
    }
    return lengths;
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
