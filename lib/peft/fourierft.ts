/**
 * FourierFT (PEFT `FOURIERFT`, Gao et al. 2024) as a spectral layer. PEFT's `get_delta_weight`
 * scatters the n_frequency coefficients into a dense (out × in) spectrum S at its positions
 * and returns `ifft2(S, norm).real · scaling`; with the default norm "backward" that is
 * `(scaling/(M·N)) · Σ S[u,v]·cos(2π(ui/M + vj/N))` — exactly this project's `dft` transform
 * with α = scaling (SPEC §1.2, §1.3). PEFT's `ifft2_norm` "ortho" multiplies by √(M·N) and
 * "forward" by M·N, i.e. α = scaling·√(M·N) or scaling·M·N. The layer runs on the spectral op
 * like SSH (no dense ΔW per step, where PEFT rebuilds one every forward).
 *
 * Positions: PEFT draws them for every layer as `torch.randperm(M·N, generator=manual_seed(
 * random_loc_seed))[:n_frequency]` (row-major flat indices of the out × in spectrum) and does not
 * save them; {@link peftFourierftPositions} draws the same (lib/peft/torch_randperm.ts), for PEFT's
 * adapters and for new ones, which PEFT therefore loads as they were trained. Past torch's 64-bit
 * randperm threshold (M·N ≥ 2³²/20: a large feed-forward weight, an LM head) that draw takes
 * seconds (once per layer size); lib/peft/files.ts also saves every layer's positions in a side file.
 * The count per layer is PEFT's: n_frequency, or int(alpha·N·M) when the config sets `alpha`
 * ({@link fourierftFrequencies}).
 * Coefficients start at zero (`init_weights` true) or N(0, 1) (false, PEFT's default), drawn
 * as `new Prng(random_loc_seed + ℓ + 2^31).normals(n)` (PEFT draws them with torch's global RNG).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { Linear } from "../nn/linear.ts";
import { Prng } from "../spectral/prng.ts";
import { type FourierFTConfig, fourierftFrequencies, frequencyFraction } from "./config.ts";
import type { FourierFTModule } from "./files.ts";
import { SpectralLayer } from "./spectral_layer.ts";
import { derivedSeed } from "./ssh.ts";
import { torchRandpermPrefix } from "./torch_randperm.ts";

/** PEFT's `ifft2_norm` values. */
export type Ifft2Norm = "backward" | "ortho" | "forward";

/** The `ifft2_norm` of a config (kept in `extra`; PEFT's default "backward"). */
export function ifft2Norm(config: FourierFTConfig): Ifft2Norm {
  const v = config.extra.ifft2_norm ?? "backward";
  if (v !== "backward" && v !== "ortho" && v !== "forward") {
    throw new Error(
      `FourierFT "ifft2_norm" must be "backward", "ortho" or "forward", got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** The α of the spectral op for PEFT's scaling and norm on an M×N layer (see the module doc). */
export function fourierftAlpha(scaling: number, m: number, n: number, norm: Ifft2Norm = "backward"): number {
  return norm === "backward" ? scaling : norm === "ortho" ? scaling * Math.sqrt(m * n) : scaling * m * n;
}

/**
 * A new FourierFT module for layer ℓ = `index`: PEFT's count of coefficients for the layer
 * ({@link fourierftFrequencies}) at PEFT's positions, and the init of `init_weights` (see the
 * module doc).
 * @throws RangeError when that count is over M·N (PEFT's limit) or below 1.
 */
export function initFourierftModule(
  config: FourierFTConfig,
  lin: Linear,
  index: number,
): FourierFTModule {
  const m = lin.outFeatures, n = lin.inFeatures, count = fourierftFrequencies(config, m, n);
  const fraction = frequencyFraction(config);
  const what = fraction === null
    ? `n_frequency = ${count}`
    : `alpha = ${fraction} gives int(alpha·N·M) = ${count} coefficients, which`;
  if (count > m * n) {
    throw new RangeError(`${lin.path}: ${what} must be at most M·N = ${m}·${n} = ${m * n} (PEFT's limit)`);
  }
  if (count < 1) throw new RangeError(`${lin.path}: ${what} must be at least 1 (as PEFT)`);
  const indices = peftFourierftPositions(m, n, count, config.randomLocSeed);
  const spectrum = config.initWeights
    ? new Float32Array(count)
    : new Prng(derivedSeed(config.randomLocSeed, index + 2 ** 31)).normals(count);
  return { outFeatures: m, inFeatures: n, spectrum, indices };
}

/**
 * The (row, col) pairs PEFT draws for an M×N (out × in) layer from `seed` (seconds past torch's
 * randperm threshold, M·N ≥ 2³²/20: see {@link torchRandpermPrefix}).
 */
export function peftFourierftPositions(m: number, n: number, count: number, seed: number): Int32Array {
  return pairsOf(torchRandpermPrefix(m * n, seed, count), n);
}

/** Row-major flat indices of an N-column matrix as (row, col) pairs. */
function pairsOf(flats: ArrayLike<number>, n: number): Int32Array {
  return Int32Array.from(Array.from(flats).flatMap((f) => [Math.floor(f / n), f % n]));
}

/**
 * The FourierFT layer of a module on `linear` (sizes checked). A module without positions takes
 * those PEFT draws from random_loc_seed.
 * @throws Error naming the layer for a size mismatch.
 */
export function fourierftLayer(
  gpu: Gpu,
  lin: Linear,
  module: FourierFTModule,
  config: FourierFTConfig,
): SpectralLayer {
  const m = lin.outFeatures, n = lin.inFeatures;
  if (module.outFeatures !== m || module.inFeatures !== n) {
    throw new Error(
      `${lin.path}: the FourierFT module was made for a ${module.outFeatures}×${module.inFeatures} layer ` +
        `(out×in), this layer is ${m}×${n}`,
    );
  }
  return new SpectralLayer(gpu, "fourierft", {
    outFeatures: m,
    inFeatures: n,
    positions: module.indices ?? peftFourierftPositions(m, n, module.spectrum.length, config.randomLocSeed),
    transform: "dft",
    alpha: fourierftAlpha(config.scaling, m, n, ifft2Norm(config)),
    coef: module.spectrum,
    path: lin.path,
  });
}

/**
 * Float64 reference of PEFT's `get_delta_weight`: `Re(ifft2(S, norm))·scaling` (M×N), by the
 * definition of the inverse DFT (O(n·M·N)).
 */
export function fourierftDeltaReference(
  module: FourierFTModule,
  scaling: number,
  norm: Ifft2Norm = "backward",
): Float64Array {
  const { outFeatures: m, inFeatures: n, spectrum, indices } = module;
  if (!indices) throw new Error("fourierftDeltaReference: the module has no positions");
  const f = norm === "backward" ? 1 / (m * n) : norm === "ortho" ? 1 / Math.sqrt(m * n) : 1;
  const out = new Float64Array(m * n);
  for (let k = 0; k < spectrum.length; k++) {
    const u = indices[2 * k], v = indices[2 * k + 1];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const t = 2 * Math.PI * (((u * i) % m) / m + ((v * j) % n) / n);
        out[i * n + j] += scaling * f * spectrum[k] * Math.cos(t);
      }
    }
  }
  return out;
}
