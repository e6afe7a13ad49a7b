/**
 * Fixed, seeded train / held-out splits: by fraction over items (stratified by a key such as
 * the label, so each class keeps its share), the eval split of a run (a given eval set, else a
 * held-out fraction of the training set), and a contiguous tail split of a token stream for
 * causal language modelling.
 * @module
 */
import { Prng } from "../spectral/prng.ts";

/** Options of {@link splitIndices}. */
export interface SplitOptions {
  /** Share of the items held out, in [0, 1]. */
  fraction: number;
  /** PRNG seed, an integer in [0, 2^53) (default 0). */
  seed?: number;
  /** A stratum key per item (e.g. its label): each stratum is split by the same fraction. */
  strata?: ArrayLike<number | string>;
}

/** Indices of each side of a split, both ascending. */
export interface IndexSplit {
  train: number[];
  heldOut: number[];
}

/**
 * Split the indices 0..n−1. round(fraction·n) indices are held out. With strata, stratum s of
 * size n_s gets floor(fraction·n_s) of them, and the rest go one each to the strata with the
 * largest remainders (the first-seen stratum on ties); strata are taken in first-seen order.
 * Within each stratum (or the whole range) the indices are shuffled with Fisher–Yates driven by
 * one `new Prng(seed)` (for i = m−1 down to 1, swap i with `below(i + 1)`), and the first ones
 * are held out. Both sides are returned ascending, so items keep their original order.
 */
export function splitIndices(n: number, { fraction, seed = 0, strata }: SplitOptions): IndexSplit {
  if (!(Number.isInteger(n) && n >= 0)) {
    throw new RangeError(`splitIndices: n must be an integer ≥ 0, got ${n}`);
  }
  if (!(fraction >= 0 && fraction <= 1)) {
    throw new RangeError(`splitIndices: fraction must be in [0, 1], got ${fraction}`);
  }
  if (strata !== undefined && strata.length !== n) {
    throw new RangeError(`splitIndices: ${strata.length} strata keys for ${n} items`);
  }
  const groups = new Map<number | string, number[]>();
  for (let i = 0; i < n; i++) {
    const key = strata === undefined ? 0 : strata[i];
    const group = groups.get(key);
    if (group) group.push(i);
    else groups.set(key, [i]);
  }
  const members = [...groups.values()];
  const quota = members.map((g) => Math.floor(fraction * g.length));
  let left = Math.round(fraction * n) - quota.reduce((a, b) => a + b, 0);
  const byRemainder = members.map((g, k) => ({ k, r: fraction * g.length - quota[k] }))
    .sort((a, b) => b.r - a.r || a.k - b.k);
  for (const { k } of byRemainder) {
    if (left <= 0) break;
    if (quota[k] < members[k].length) {
      quota[k]++;
      left--;
    }
  }
  const prng = new Prng(seed);
  const train: number[] = [], heldOut: number[] = [];
  members.forEach((group, k) => {
    const g = [...group];
    for (let i = g.length - 1; i >= 1; i--) {
      const j = prng.below(i + 1);
      [g[i], g[j]] = [g[j], g[i]];
    }
    // loops, not spreads: a stratum of a large split passes the engine's argument limit
    for (let i = 0; i < g.length; i++) (i < quota[k] ? heldOut : train).push(g[i]);
  });
  const ascending = (a: number, b: number) => a - b;
  return { train: train.sort(ascending), heldOut: heldOut.sort(ascending) };
}

/** Options of {@link splitByFraction}. */
export interface ItemSplitOptions<T> {
  fraction: number;
  seed?: number;
  /** Stratum key of an item (e.g. `(x) => x.label`). */
  stratify?: (item: T) => number | string;
}

/** Split items as {@link splitIndices} splits their indices; both sides keep the items' order. */
export function splitByFraction<T>(
  items: readonly T[],
  { fraction, seed, stratify }: ItemSplitOptions<T>,
): { train: T[]; heldOut: T[] } {
  const { train, heldOut } = splitIndices(items.length, {
    fraction,
    seed,
    strata: stratify && items.map(stratify),
  });
  return { train: train.map((i) => items[i]), heldOut: heldOut.map((i) => items[i]) };
}

/** Options of {@link trainEvalSplit}. */
export interface EvalSplitOptions<T> {
  /** A separate eval set (e.g. read from an eval file); then the training set is used whole. */
  eval?: readonly T[];
  /** Share of the training set held out for eval when no eval set is given (default 0.1). */
  fraction?: number;
  seed?: number;
  stratify?: (item: T) => number | string;
}

/**
 * The training and eval sets of a run: the given eval set, else a seeded held-out fraction of
 * the training set (see {@link splitByFraction}). Neither side may be empty.
 */
export function trainEvalSplit<T>(
  items: readonly T[],
  { eval: evalItems, fraction = 0.1, seed = 0, stratify }: EvalSplitOptions<T> = {},
): { train: T[]; eval: T[] } {
  let out: { train: T[]; eval: T[] };
  if (evalItems !== undefined) {
    out = { train: [...items], eval: [...evalItems] };
  } else {
    const { train, heldOut } = splitByFraction(items, { fraction, seed, stratify });
    out = { train, eval: heldOut };
  }
  if (out.train.length === 0) throw new RangeError(`trainEvalSplit: the training set is empty`);
  if (out.eval.length === 0) {
    throw new RangeError(
      evalItems !== undefined
        ? `trainEvalSplit: the eval set is empty`
        : `trainEvalSplit: holding out ${fraction} of ${items.length} items leaves no eval items`,
    );
  }
  return out;
}

/**
 * A token stream cut in two: the first floor(n·(1 − fraction)) tokens for training, the rest
 * held out (as the gpt2-brown pretraining run split its 1,428,458 ids at 95%: 1,357,035 for
 * training). Contiguous, so no window of one side overlaps the other.
 */
export function splitTokens(
  tokens: Int32Array,
  fraction: number,
): { train: Int32Array; heldOut: Int32Array } {
  if (!(fraction >= 0 && fraction <= 1)) {
    throw new RangeError(`splitTokens: fraction must be in [0, 1], got ${fraction}`);
  }
  const cut = Math.floor(tokens.length * (1 - fraction));
  return { train: tokens.subarray(0, cut), heldOut: tokens.subarray(cut) };
}
