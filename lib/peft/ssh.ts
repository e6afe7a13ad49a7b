/**
 * SSH (SPEC §1): choosing each target layer's positions from its frozen weight on the GPU,
 * initialising the coefficients, and building the {@link SpectralLayer}s. A weight loaded rounded
 * (f16, q8, q4 storage) is ranked on its checkpoint's values ({@link withF32Weight}), so the
 * positions do not depend on the dtype the model was loaded with.
 *
 * Seeds, exactly (ℓ = the layer's index among the targets, in model order; arithmetic mod 2^53):
 * - selection `layer`: layer ℓ's remainder positions are drawn with seed `seed + 2ℓ`
 *   ({@link selectPositions}), its `normal` init is `new Prng(seed + 2ℓ + 1).normals(n)`;
 * - selection `global`: the remainder is one draw with `seed` over all layers (below); the
 *   init of layer ℓ is `new Prng(seed + 2ℓ + 1).normals(n_ℓ)` as above.
 *
 * Both selections rank and draw over each layer's {@link positionSpace}: its M·N positions, or
 * for `dft` one position per mirror class (u, v) ~ (−u, −v), whose two coefficients would be
 * one degree of freedom (see lib/spectral/select.ts); for `dft`, n ≤ (M·N + s)/2 accordingly.
 *
 * Selection `global` (one budget B = n·L for the L targets):
 * 1. each layer's energy E_ℓ = T(W_ℓ)² is normalised by its total over all M·N positions,
 *    e_ℓ = E_ℓ / ΣE_ℓ (a layer with zero total energy has e_ℓ = 0); the total is summed in f32
 *    blocks on the GPU and in float64 across blocks, the division is done in float64 on the f32
 *    energies;
 * 2. the round(δ·B) (halves to even) largest e_ℓ over all layers' position spaces are taken,
 *    ties to the smaller layer index, then to the smaller flat index u·N + v (found by merging
 *    the layers' top lists, {@link globalTopCounts});
 * 3. the other B − round(δ·B) positions are drawn uniformly without replacement from all
 *    remaining positions with {@link sampleRemainder} (`seed`), over the concatenated index
 *    space (layer 0's position space in flat order, then layer 1's, …; at most 2^32 positions
 *    in all).
 * A layer thus gets n_ℓ ≥ 0 positions with Σ n_ℓ = B: the energy ones in rank order, then the
 * random ones in ascending flat order. A layer that gets none keeps no adapter (its module is
 * saved with zero coefficients).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { grid, readF32, upload } from "../gpu/buffers.ts";
import { bindingLimit } from "../gpu/bands.ts";
import type { Linear } from "../nn/linear.ts";
import { storedValues } from "../nn/load.ts";
import { cast, noGrad } from "../tensor/mod.ts";
import { Prng } from "../spectral/prng.ts";
import {
  encodeEnergy,
  NonFiniteEnergyError,
  type PositionSpace,
  positionSpace,
  roundHalfEven,
  sampleRemainder,
  selectPositions,
  topkSpace,
} from "../spectral/select.ts";
import type { Transform } from "../spectral/transforms.ts";
import { BLOCK_SUM_SPAN, blockSumKernel, gatherValuesKernel } from "../../kernels/peft.ts";
import { WG } from "../../kernels/indexing.ts";
import type { Init, SSHConfig } from "./config.ts";
import type { SSHModule } from "./files.ts";
import { SpectralLayer } from "./spectral_layer.ts";

const TWO_53 = 9007199254740992;
const TWO_32 = 4294967296;

/**
 * GPU memory the layers ranked at once may take (their spectra, energies and f32 copies, ≈ 12
 * bytes a weight element). Each ranking waits on 5–7 readbacks (≈ 11 ms each in Deno), so
 * ranking several layers at once overlaps the waits: RoBERTa-base's 24 targets wait ≈ 1/8 as
 * long, LLaMA-7B's (200 MB each) ≈ 1/2.
 */
const SELECT_BYTES = 512 * 2 ** 20;
/** Most layers ranked at once. */
const SELECT_AT_ONCE = 8;

/**
 * `fn` of each of `linears`, several at once (as {@link SELECT_BYTES} allows), results in
 * order. After a failure no further one starts; the first failure is thrown once those
 * running have ended.
 */
async function eachLayer<T>(linears: readonly Linear[], fn: (l: number) => Promise<T>): Promise<T[]> {
  const largest = Math.max(...linears.map((l) => l.outFeatures * l.inFeatures));
  const atOnce = Math.max(1, Math.min(SELECT_AT_ONCE, Math.floor(SELECT_BYTES / (12 * largest))));
  const out = new Array<T>(linears.length);
  let next = 0, failed = false;
  const worker = async () => {
    while (!failed && next < linears.length) {
      const l = next++;
      try {
        out[l] = await fn(l);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(atOnce, linears.length) }, worker));
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failure) throw failure.reason;
  return out;
}

/** The position options of SSH. */
export interface SshSelectOptions {
  /** Positions per layer (`layer`) or the per-layer budget (`global`). */
  n: number;
  /** δ: the share of positions chosen by energy. */
  energyRatio: number;
  transform: Transform;
  seed: number;
}

/** A seed derived from the config's: `(seed + k) mod 2^53`. */
export function derivedSeed(seed: number, k: number): number {
  return seed >= TWO_53 - k ? seed - (TWO_53 - k) : seed + k;
}

/**
 * Run `fn` on the frozen weight of `linear` as an f32 GPU buffer in storage order. A weight
 * loaded rounded (f16, q8, q4) gives its checkpoint's values, read again into a temporary upload,
 * so that SSH ranks the same positions whatever `dtype` the model was loaded with; any other
 * non-f32 weight (one rewritten since loading, or not loaded from a checkpoint) is converted into
 * a temporary copy. Throws, naming the layer, when that buffer would be over one storage binding
 * (the 2-D transforms read it whole).
 */
export async function withF32Weight<T>(linear: Linear, fn: (w: GPUBuffer) => Promise<T>): Promise<T> {
  const w = linear.weight;
  const limit = bindingLimit(w.gpu), bytes = 4 * w.size;
  if (bytes > limit) {
    // its 2-D transform reads and writes the whole weight at once
    throw new Error(
      `${linear.path}: its ${linear.outFeatures}×${linear.inFeatures} weight takes ${bytes} bytes as f32, over ` +
        `this device's largest storage binding (${limit} bytes), so SSH cannot rank its spectrum here: leave ` +
        "it out of the target modules, or adapt it with LoRA or FourierFT",
    );
  }
  if (w.dtype === "f32") return await fn(w.buffer);
  const stored = await storedValues(w);
  if (stored) {
    const buffer = upload(w.gpu, stored, "ssh.stored_weight");
    try {
      return await fn(buffer);
    } finally {
      w.gpu.pool.release(buffer);
    }
  }
  const copy = noGrad(() => cast(w, "f32"));
  try {
    return await fn(copy.buffer);
  } finally {
    copy.dispose();
  }
}

/** Throws unless 1 ≤ n ≤ the size of the layer's position space (M·N; fewer for `dft`), naming the layer. */
function checkCount(linear: Linear, n: number, transform: Transform): void {
  const space = positionSpace(transform, linear.outFeatures, linear.inFeatures);
  if (!Number.isInteger(n) || n < 1 || n > space.size) {
    throw new RangeError(
      `${linear.path}: n = ${n} positions do not fit its ${linear.outFeatures}×${linear.inFeatures} ` +
        `spectrum (out×in; n must be an integer in [1, ${space.limit}])`,
    );
  }
}

/**
 * Selection `layer` on one layer: the n positions ([n, 2], (out, in)) from its frozen weight
 * ({@link selectPositions} with the given seed).
 */
export async function selectLayerPositions(
  gpu: Gpu,
  linear: Linear,
  opts: SshSelectOptions,
): Promise<Int32Array> {
  checkCount(linear, opts.n, opts.transform);
  return await withF32Weight(linear, async (w) => {
    try {
      return await selectPositions(gpu, w, linear.outFeatures, linear.inFeatures, {
        ...opts,
        transposed: linear.layout === "in_out",
      });
    } catch (e) {
      throw e instanceof NonFiniteEnergyError ? await unrankable(gpu, linear, w) : e;
    }
  });
}

/**
 * The error of a layer whose spectral energies are not finite, naming the layer and the first
 * non-finite element of its weight (read back here, on the failure path only), or saying that
 * a finite weight's transform overflowed f32.
 */
async function unrankable(gpu: Gpu, linear: Linear, w: GPUBuffer): Promise<RangeError> {
  const values = await readF32(gpu, w, linear.weight.size);
  const bad = values.findIndex((v) => !Number.isFinite(v));
  const cols = linear.weight.shape[1], at = `[${Math.floor(bad / cols)}, ${bad % cols}]`;
  const why = bad >= 0
    ? `its weight holds non-finite values (NaN or ±Inf; ${values[bad]} at ${at})`
    : "its weight is finite, but so large that its spectral energies overflow f32";
  return new RangeError(
    `${linear.path}: ${why}: SSH cannot rank its spectrum. Check the model's checkpoint, or leave the ` +
      "layer out of the target modules",
  );
}

/**
 * A layer's candidates for the global ranking: its top-k ranks in its {@link PositionSpace}
 * and their normalised energies, in rank order (energy descending, ties by rank ascending).
 */
export interface Candidates {
  ranks: Uint32Array;
  energy: Float64Array;
}

/** One layer's {@link Candidates}: the top k of its position space (or all, when fewer). */
async function layerCandidates(
  gpu: Gpu,
  linear: Linear,
  transform: Transform,
  k: number,
): Promise<Candidates> {
  const m = linear.outFeatures, n = linear.inFeatures;
  const space = positionSpace(transform, m, n);
  return await withF32Weight(linear, async (w) => {
    const energy = encodeEnergy(gpu, transform, w, m, n, { transposed: linear.layout === "in_out" });
    try {
      const total = await sumF32(gpu, energy, m * n);
      // NaN or ±Inf in any energy makes the total so, and the energies could not be normalised
      if (!Number.isFinite(total)) throw await unrankable(gpu, linear, w);
      const ranks = await topkSpace(gpu, energy, space, Math.min(k, space.size));
      const values = await gatherF32(gpu, energy, ranks.map((r) => space.flat(r)));
      return { ranks, energy: Float64Array.from(values, (v) => (total > 0 ? v / total : 0)) };
    } finally {
      gpu.pool.release(energy);
    }
  });
}

/**
 * How many of each layer's candidates the k best over all layers take (energy descending, then
 * layer ascending, then rank ascending). Each list is already in that order (distinct f32
 * energies stay distinct after one division by a positive float64 total), so the k best are a
 * prefix of each list, found by a k-way merge with a binary heap over the layers' heads:
 * O(k log L) time and no k·L-entry array.
 */
export function globalTopCounts(candidates: readonly Candidates[], k: number): number[] {
  const taken = candidates.map(() => 0);
  const head = (l: number) => candidates[l].energy[taken[l]];
  const before = (a: number, b: number) => head(a) > head(b) || (head(a) === head(b) && a < b);
  const heap = candidates.map((_, l) => l).filter((l) => candidates[l].ranks.length > 0);
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(heap, i, before);
  for (let i = 0; i < k && heap.length > 0; i++) {
    const l = heap[0];
    taken[l]++;
    if (taken[l] === candidates[l].ranks.length) {
      const last = heap.pop()!; // the layer's list is used up: the last leaf replaces the root
      if (heap.length > 0) heap[0] = last;
    }
    siftDown(heap, 0, before);
  }
  return taken;
}

/** Restore the heap order below `i` of a binary heap whose root is its `before`-first element. */
function siftDown(heap: number[], i: number, before: (a: number, b: number) => boolean): void {
  for (;;) {
    const left = 2 * i + 1, right = left + 1;
    let first = i;
    if (left < heap.length && before(heap[left], heap[first])) first = left;
    if (right < heap.length && before(heap[right], heap[first])) first = right;
    if (first === i) return;
    [heap[i], heap[first]] = [heap[first], heap[i]];
    i = first;
  }
}

/**
 * Selection `global` over `linears` (see the module doc): the positions of each layer
 * ([n_ℓ, 2], (out, in)), with Σ n_ℓ = n·L.
 */
export async function selectGlobalPositions(
  gpu: Gpu,
  linears: readonly Linear[],
  opts: SshSelectOptions,
): Promise<Int32Array[]> {
  const { n, energyRatio, transform, seed } = opts;
  const spaces = linears.map((l) => positionSpace(transform, l.outFeatures, l.inFeatures));
  const sizes = spaces.map((s) => s.size);
  const total = sizes.reduce((a, b) => a + b, 0);
  const budget = n * linears.length;
  if (!Number.isInteger(n) || n < 1 || budget > total) {
    const what = transform === "dft" ? "distinct dft basis functions" : "positions";
    throw new RangeError(
      `selection "global": n·L = ${n}·${linears.length} positions do not fit the ${total} ${what} of the ` +
        `${linears.length} target layers (n must be an integer ≥ 1 with n·L ≤ ${total})`,
    );
  }
  if (total > TWO_32) {
    throw new RangeError(
      `selection "global": the target layers hold ${total} positions in all, more than the 2^32 the ` +
        `remainder draw supports; use selection "layer"`,
    );
  }
  if (!(energyRatio >= 0 && energyRatio <= 1)) {
    throw new RangeError(`energy_ratio must be in [0, 1], got ${energyRatio}`);
  }
  const nEnergy = roundHalfEven(energyRatio * budget);
  const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
  let top: Uint32Array[] = linears.map(() => new Uint32Array(0));
  if (nEnergy > 0) {
    const candidates = await eachLayer(linears, (l) => layerCandidates(gpu, linears[l], transform, nEnergy));
    const counts = globalTopCounts(candidates, nEnergy);
    top = candidates.map((c, l) => c.ranks.subarray(0, counts[l]));
  }
  const selected = top.flatMap((ranks, l) => Array.from(ranks, (r) => offsets[l] + r));
  const rest = sampleRemainder(selected, total, budget - nEnergy, seed);
  const perLayer: number[][] = top.map((ranks) => Array.from(ranks));
  let l = 0;
  for (const g of rest) {
    while (g >= offsets[l] + sizes[l]) l++;
    perLayer[l].push(g - offsets[l]);
  }
  return perLayer.map((ranks, i) => pairsOf(ranks, spaces[i], linears[i].inFeatures));
}

/** (row, col) pairs ([count, 2]) of ranks in an M×N layer's position space. */
function pairsOf(ranks: readonly number[], space: PositionSpace, nIn: number): Int32Array {
  const out = new Int32Array(2 * ranks.length);
  ranks.forEach((r, i) => {
    const f = space.flat(r);
    out[2 * i] = Math.floor(f / nIn);
    out[2 * i + 1] = f % nIn;
  });
  return out;
}

/** Initial coefficients: zeros, or `new Prng(seed).normals(count)` (standard normal). */
export function initCoefficients(init: Init, count: number, seed: number): Float32Array {
  return init === "zeros" ? new Float32Array(count) : new Prng(seed).normals(count);
}

/**
 * New SSH layers on `linears` (the config's targets, in model order) per `config`: positions
 * from the frozen weights, coefficients initialised (see the module doc for the seeds). A
 * layer that selection `global` gives no position maps to null.
 */
export async function createSshLayers(
  gpu: Gpu,
  linears: readonly Linear[],
  config: SSHConfig,
): Promise<Map<string, SpectralLayer | null>> {
  const opts = {
    n: config.n,
    energyRatio: config.energyRatio,
    transform: config.transform,
    seed: config.seed,
  };
  let positions: Int32Array[];
  if (config.selection === "global") {
    positions = await selectGlobalPositions(gpu, linears, opts);
  } else {
    for (const l of linears) checkCount(l, config.n, config.transform);
    positions = await eachLayer(
      linears,
      (l) => selectLayerPositions(gpu, linears[l], { ...opts, seed: derivedSeed(config.seed, 2 * l) }),
    );
  }
  const out = new Map<string, SpectralLayer | null>();
  try {
    linears.forEach((linear, l) => {
      const count = positions[l].length / 2;
      out.set(
        linear.path,
        count === 0 ? null : sshLayer(gpu, linear, {
          outFeatures: linear.outFeatures,
          inFeatures: linear.inFeatures,
          indices: positions[l],
          spectrum: initCoefficients(config.init, count, derivedSeed(config.seed, 2 * l + 1)),
        }, config),
      );
    });
  } catch (e) {
    for (const layer of out.values()) layer?.dispose();
    throw e;
  }
  return out;
}

/**
 * The SSH layer of a saved module on `linear` (its size must match), with α and the transform
 * of `config`.
 * @throws Error naming the layer when the module was made for another shape.
 */
export function sshLayer(gpu: Gpu, linear: Linear, module: SSHModule, config: SSHConfig): SpectralLayer {
  if (module.outFeatures !== linear.outFeatures || module.inFeatures !== linear.inFeatures) {
    throw new Error(
      `${linear.path}: the SSH module was made for a ${module.outFeatures}×${module.inFeatures} layer ` +
        `(out×in), this layer is ${linear.outFeatures}×${linear.inFeatures}`,
    );
  }
  return new SpectralLayer(gpu, "ssh", {
    outFeatures: linear.outFeatures,
    inFeatures: linear.inFeatures,
    positions: module.indices,
    transform: config.transform,
    alpha: config.alpha,
    coef: module.spectrum,
    path: linear.path,
  });
}

/** Σ of `size` f32 values: f32 block sums on the GPU, float64 across blocks. */
export async function sumF32(gpu: Gpu, buffer: GPUBuffer, size: number): Promise<number> {
  const blocks = Math.ceil(size / BLOCK_SUM_SPAN);
  const partial = gpu.pool.acquire(blocks * 4, undefined, "peft.partial");
  try {
    gpu.stream.dispatch(blockSumKernel, [buffer, partial], grid(gpu, blocks), new Uint32Array([size]));
    const p = await readF32(gpu, partial, blocks);
    let s = 0;
    for (const v of p) s += v;
    return s;
  } finally {
    gpu.pool.release(partial);
  }
}

/** The f32 values of `buffer` at `indices` (reads back). */
async function gatherF32(gpu: Gpu, buffer: GPUBuffer, indices: Uint32Array): Promise<Float32Array> {
  if (indices.length === 0) return new Float32Array(0);
  const idx = upload(gpu, indices, "peft.gather_idx");
  const out = gpu.pool.acquire(indices.length * 4, undefined, "peft.gather_out");
  try {
    gpu.stream.dispatch(
      gatherValuesKernel,
      [buffer, idx, out],
      grid(gpu, Math.ceil(indices.length / WG)),
      new Uint32Array([indices.length]),
    );
    return await readF32(gpu, out, indices.length);
  } finally {
    gpu.pool.release(idx);
    gpu.pool.release(out);
  }
}
