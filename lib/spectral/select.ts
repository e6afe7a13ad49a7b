/**
 * Choosing an adapter's spectral positions (SPEC §1.4): the energy E = T(W₀)² on the GPU,
 * an exact top-k of E (ties to the smaller flat index), and the seeded uniform remainder.
 * Runs once per layer at setup, so it reads back freely (four 1 KiB histograms and the
 * k selected entries).
 *
 * Ranking and drawing run over a layer's `positionSpace`: all M·N positions for `dht`
 * and `dht2d`; for `dft` one representative per mirror class. The `dft` basis function
 * cos(2π(ui/M + vj/N)) is the same at (u, v) and (−u, −v) mod (M, N), so two coefficients
 * there act on ΔW only through their sum and always get equal gradients: a mirror pair is one
 * degree of freedom. Each class {(u, v), (−u, −v)} is represented by its smaller flat index
 * (a self-conjugate position, 2u ≡ 0 mod M and 2v ≡ 0 mod N, is its own class), so a `dft`
 * adapter gets n distinct basis functions and n ≤ (M·N + s)/2, with s ∈ {1, 2, 4} the
 * self-conjugate positions. Positions stored in an adapter file are taken as they are, mirror
 * pairs included.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { grid, readU32 } from "../gpu/buffers.ts";
import {
  compactKernel,
  countKernel,
  energyKernel,
  histogramKernel,
  scanKernel,
  SELECT_BLOCK,
  SELECT_THREADS,
} from "../../kernels/select.ts";
import { Prng } from "./prng.ts";
import { basisReference } from "./sparse.ts";
import { encodeTransform2d, type Transform, TRANSFORMS } from "./transforms.ts";

const MAX_U32 = 4294967295;

/**
 * The energies handed to {@link topkEnergy} hold NaN (or negative values), so they have no
 * ranking; the caller, which knows whose weight it was, says so in its terms.
 */
export class NonFiniteEnergyError extends RangeError {
  /** Always "NonFiniteEnergyError". */
  override name = "NonFiniteEnergyError";
}

/** Options of {@link selectPositions}. */
export interface SelectOptions {
  /** Number of positions (coefficients), an integer 1 ≤ n ≤ M·N. */
  n: number;
  /** δ ∈ [0, 1]: round(δ·n) positions by energy (halves to even, as Python rounds), the rest at random. */
  energyRatio: number;
  /** The adapter's transform; the energy is T(W₀)² with the same transform. */
  transform: Transform;
  /** Seed of the remainder's {@link Prng} (integer, 0 ≤ seed < 2^53). */
  seed: number;
  /** True when the weight is stored (in, out) = (N, M) row-major, as GPT-2's Conv1D does. */
  transposed?: boolean;
}

/**
 * The positions selection ranks and draws from, in ascending flat order: rank r is flat index
 * {@link PositionSpace.flat}(r). All M·N for `dht` and `dht2d` (rank = flat index); for `dft` the
 * smaller flat index of each mirror class (module doc): row 0's columns 0..⌊N/2⌋, then every
 * position from row 1 on up to the last representative (rows 1..⌈M/2⌉ − 1 whole, then for even
 * M row M/2's columns 0..⌊N/2⌋), so the ranks are two runs of flat indices.
 */
export class PositionSpace {
  /**
   * @param size number of ranks; @param head length of the first run (from flat 0);
   * @param gap flat indices skipped before the second run; @param limit the bound on n, for messages.
   */
  constructor(readonly size: number, readonly head: number, readonly gap: number, readonly limit: string) {}

  /** The flat index u·N + v of rank r. */
  flat(r: number): number {
    return r < this.head ? r : r + this.gap;
  }
}

/** The {@link PositionSpace} of an M×N spectrum under `transform`. */
export function positionSpace(transform: Transform, m: number, nIn: number): PositionSpace {
  const total = m * nIn;
  if (transform !== "dft") return new PositionSpace(total, total, 0, `M·N = ${total}`);
  const head = Math.floor(nIn / 2) + 1; // representatives in row 0 (and in row M/2)
  const size = head + Math.floor((m - 1) / 2) * nIn + (m % 2 === 0 ? head : 0);
  const limit = `${size}, the dft's distinct basis functions ((u, v) and (−u, −v) are one)`;
  return new PositionSpace(size, head, nIn - head, limit);
}

/**
 * The n positions of an adapter on a frozen weight, as `[n, 2]` (row, col) pairs in the
 * logical (out, in) orientation: first the round(δ·n) largest energies (energy descending,
 * ties by flat index u·N + v ascending), then the remainder drawn by `sampleRemainder`
 * over the ranks of the `positionSpace`, in ascending flat index.
 * @param weight f32 weight, (M, N) row-major, or (N, M) with `transposed`.
 * @param m out_features M; @param nIn in_features N.
 * @throws NonFiniteEnergyError when the energies hold NaN (a non-finite weight, or one whose
 * transform overflows f32).
 */
export async function selectPositions(
  gpu: Gpu,
  weight: GPUBuffer,
  m: number,
  nIn: number,
  opts: SelectOptions,
): Promise<Int32Array> {
  checkShape(m, nIn, weight, "weight");
  const { n, energyRatio, transform, seed } = opts;
  const space = positionSpace(transform, m, nIn);
  if (!Number.isInteger(n) || n < 1 || n > space.size) {
    throw new RangeError(`selectPositions: n must be an integer in [1, ${space.limit}], got ${n}`);
  }
  if (!(energyRatio >= 0 && energyRatio <= 1)) {
    throw new RangeError(`selectPositions: energyRatio must be in [0, 1], got ${energyRatio}`);
  }
  const nEnergy = roundHalfEven(energyRatio * n);
  let top: Uint32Array = new Uint32Array(0);
  if (nEnergy > 0) {
    const energy = encodeEnergy(gpu, transform, weight, m, nIn, { transposed: opts.transposed });
    try {
      top = await topkSpace(gpu, energy, space, nEnergy);
    } finally {
      gpu.pool.release(energy);
    }
  }
  const rest = sampleRemainder(top, space.size, n - nEnergy, seed);
  const out = new Int32Array(2 * n);
  let i = 0;
  for (const list of [top, rest]) {
    for (const r of list) {
      const f = space.flat(r);
      out[2 * i] = Math.floor(f / nIn);
      out[2 * i + 1] = f % nIn;
      i++;
    }
  }
  return out;
}

/**
 * {@link topkEnergy} over the ranks of `space`, given the full M·N energy map from
 * {@link encodeEnergy}: the k ranks of largest energy, ties by rank (= flat order) ascending.
 */
export async function topkSpace(
  gpu: Gpu,
  energy: GPUBuffer,
  space: PositionSpace,
  k: number,
): Promise<Uint32Array> {
  // one run: a prefix of the energy map
  if (space.gap === 0 || space.head === space.size) return await topkEnergy(gpu, energy, space.size, k);
  // two runs: packed side by side into one array of ranks
  const packed = gpu.pool.acquire(space.size * 4, undefined, "select.classes");
  try {
    gpu.stream.copy(energy, 0, packed, 0, space.head * 4);
    const second = space.size - space.head;
    gpu.stream.copy(energy, (space.head + space.gap) * 4, packed, space.head * 4, second * 4);
    return await topkEnergy(gpu, packed, space.size, k);
  } finally {
    gpu.pool.release(packed);
  }
}

/**
 * Encode E = T(W)² for the logical M×N weight into a new pooled f32 buffer (M·N entries,
 * row-major (out, in)); the caller releases it. For `dft` both members of each mirror pair
 * (i, j), (−i, −j) get bit-identical energies, as they have in exact arithmetic.
 */
export function encodeEnergy(
  gpu: Gpu,
  transform: Transform,
  weight: GPUBuffer,
  m: number,
  nIn: number,
  opts: { transposed?: boolean } = {},
): GPUBuffer {
  checkShape(m, nIn, weight, "weight");
  if (!TRANSFORMS.includes(transform)) {
    throw new RangeError(`unknown transform '${transform}' (expected one of ${TRANSFORMS.join(", ")})`);
  }
  const total = m * nIn;
  const spectrum = gpu.pool.acquire(total * 4, undefined, "select.spectrum");
  if (opts.transposed) encodeTransform2d(gpu, transform, weight, spectrum, nIn, m);
  else encodeTransform2d(gpu, transform, weight, spectrum, m, nIn);
  const energy = gpu.pool.acquire(total * 4, undefined, "select.energy");
  const params = new Uint32Array([m, nIn, opts.transposed ? 1 : 0, transform === "dft" ? 1 : 0]);
  gpu.stream.dispatch(energyKernel, [spectrum, energy], grid(gpu, Math.ceil(total / SELECT_THREADS)), params);
  gpu.pool.release(spectrum);
  return energy;
}

/**
 * The flat indices of the k largest of `size` non-negative f32 values in `energy`, sorted by
 * value descending, ties by index ascending. Exact: a radix select over the f32 bit patterns
 * (4 passes of 8 bits, each read back) finds the k-th largest pattern t, then one stable
 * compaction writes the entries > t and the first (k − #{> t}) entries = t in index order.
 * @throws RangeError when k is outside [0, size]; {@link NonFiniteEnergyError} when the values
 * contain NaN or negatives.
 */
export async function topkEnergy(gpu: Gpu, energy: GPUBuffer, size: number, k: number): Promise<Uint32Array> {
  if (!Number.isInteger(size) || size < 1 || size > MAX_U32) {
    throw new RangeError(`topkEnergy: size must be an integer in [1, 2^32), got ${size}`);
  }
  if (energy.size < size * 4) {
    throw new RangeError(`topkEnergy: energy buffer holds ${energy.size / 4} f32, need ${size}`);
  }
  if (!Number.isInteger(k) || k < 0 || k > size) {
    throw new RangeError(`topkEnergy: k must be an integer in [0, ${size}], got ${k}`);
  }
  if (k === 0) return new Uint32Array(0);
  const blocks = Math.ceil(size / SELECT_BLOCK);
  const groups = grid(gpu, blocks);
  const hist = gpu.pool.acquire(256 * 4, undefined, "select.hist");
  const counts = gpu.pool.acquire(blocks * 8, undefined, "select.counts");
  const out = gpu.pool.acquire(k * 8, undefined, "select.out");
  try {
    let prefix = 0, mask = 0, remaining = k;
    for (let shift = 24; shift >= 0; shift -= 8) {
      gpu.stream.clear(hist, 0, 256 * 4);
      gpu.stream.dispatch(
        histogramKernel,
        [energy, hist],
        groups,
        new Uint32Array([size, shift, mask, prefix]),
      );
      const h = await readU32(gpu, hist, 256);
      let d = 255;
      while (h[d] < remaining) remaining -= h[d--];
      prefix = (prefix | (d << shift)) >>> 0;
      mask = (mask | (255 << shift)) >>> 0;
    }
    const countGt = k - remaining;
    gpu.stream.dispatch(countKernel, [energy, counts], groups, new Uint32Array([size, prefix]));
    gpu.stream.dispatch(scanKernel, [counts], 1, new Uint32Array([blocks]));
    gpu.stream.dispatch(
      compactKernel,
      [energy, counts, out],
      groups,
      new Uint32Array([size, prefix, countGt, remaining]),
    );
    const pairs = await readU32(gpu, out, 2 * k);
    return sortSelection(pairs, k);
  } finally {
    gpu.pool.release(hist);
    gpu.pool.release(counts);
    gpu.pool.release(out);
  }
}

/** Indices of the compacted (index, bits) pairs by bits descending, ties by index ascending. */
function sortSelection(pairs: Uint32Array, k: number): Uint32Array {
  // The largest pattern comes first in u32 order, so one check covers the whole array.
  let maxBits = 0;
  for (let i = 0; i < k; i++) maxBits = Math.max(maxBits, pairs[2 * i + 1]);
  if (maxBits > 0x7f800000) {
    throw new NonFiniteEnergyError(
      "topkEnergy: the energies contain NaN or negative values (is the weight finite?)",
    );
  }
  // The compaction wrote indices in ascending order within each bit pattern: a stable
  // sort by bits descending is enough.
  const order = Array.from({ length: k }, (_, i) => i);
  order.sort((a, b) => pairs[2 * b + 1] - pairs[2 * a + 1]);
  return Uint32Array.from(order, (i) => pairs[2 * i]);
}

/**
 * `count` flat indices drawn uniformly without replacement from [0, total) minus `selected`,
 * returned in ascending order. Deterministic: Robert Floyd's algorithm on the ranks of the
 * unselected set, R = total − |selected|, with `new Prng(seed)`: for j = R − count, …, R − 1,
 * t = below(j + 1); take t, or j when t was already taken. Rank r maps to the r-th smallest
 * unselected index.
 */
export function sampleRemainder(
  selected: ArrayLike<number>,
  total: number,
  count: number,
  seed: number,
): Uint32Array {
  const sorted = Float64Array.from(selected).sort();
  for (let i = 0; i < sorted.length; i++) {
    if (!(sorted[i] >= 0 && sorted[i] < total) || sorted[i] === sorted[i - 1]) {
      throw new RangeError(`sampleRemainder: selected indices must be distinct and in [0, ${total})`);
    }
  }
  const free = total - sorted.length;
  if (!Number.isInteger(count) || count < 0 || count > free) {
    throw new RangeError(`sampleRemainder: count must be an integer in [0, ${free}], got ${count}`);
  }
  const prng = new Prng(seed);
  const taken = new Set<number>();
  for (let j = free - count; j < free; j++) {
    const t = prng.below(j + 1);
    taken.add(taken.has(t) ? j : t);
  }
  const ranks = Float64Array.from(taken).sort();
  const out = new Uint32Array(count);
  let skip = 0;
  for (let i = 0; i < count; i++) {
    while (skip < sorted.length && sorted[skip] <= ranks[i] + skip) skip++;
    out[i] = ranks[i] + skip;
  }
  return out;
}

/** Float64 reference of {@link topkEnergy}: a full sort (value descending, index ascending). */
export function topkReference(values: ArrayLike<number>, k: number): number[] {
  const order = Array.from({ length: values.length }, (_, i) => i);
  order.sort((a, b) => values[b] - values[a] || a - b);
  return order.slice(0, k);
}

/**
 * Float64 reference of {@link encodeEnergy} (O(M²N²): small shapes only): E = T(W)², M×N
 * row-major, from a weight stored (M, N), or (N, M) with `transposed`.
 */
export function energyReference(
  transform: Transform,
  weight: ArrayLike<number>,
  m: number,
  nIn: number,
  transposed = false,
): Float64Array {
  const out = new Float64Array(m * nIn);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < nIn; j++) {
      let t = 0;
      for (let u = 0; u < m; u++) {
        for (let v = 0; v < nIn; v++) {
          const w = transposed ? weight[v * m + u] : weight[u * nIn + v];
          t += w * basisReference(transform, m, nIn, u, v, i, j);
        }
      }
      out[i * nIn + j] = t * t;
    }
  }
  return out;
}

function checkShape(m: number, nIn: number, weight: GPUBuffer, what: string): void {
  if (!Number.isInteger(m) || !Number.isInteger(nIn) || m < 1 || nIn < 1 || m * nIn > MAX_U32) {
    throw new RangeError(`${what}: shape must be positive integers M×N with M·N < 2^32, got ${m}×${nIn}`);
  }
  if (weight.size < m * nIn * 4) {
    throw new RangeError(`${what} buffer holds ${weight.size / 4} f32, need M·N = ${m}×${nIn} = ${m * nIn}`);
  }
}

/** Round to the nearest integer, halves to even (Python's `round`, which the reference code uses). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
