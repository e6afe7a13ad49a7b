/**
 * A config.json's rotary position embedding: `rope_theta`, `rope_scaling` or transformers 5's
 * `rope_parameters`, and `partial_rotary_factor`, read into a {@link RopeConfig}.
 * @module
 */
import { type Fields, HfConfigError } from "./config_fields.ts";

/**
 * Rotary position embedding parameters: unscaled RoPE, or the scalings of transformers' "linear",
 * "dynamic", "yarn", "llama3" and "longrope" (see lib/nn/rope.ts).
 */
export type RopeConfig =
  | {
    /** Unscaled RoPE. */
    type: "default";
    /** Base of the rotary frequencies (rope_theta). */
    theta: number;
  }
  | {
    /** Every inverse frequency divided by `factor` (positions interpolated). */
    type: "linear";
    /** Base of the rotary frequencies (rope_theta). */
    theta: number;
    /** The scaling factor (> 0). */
    factor: number;
  }
  | {
    /**
     * Dynamic NTK scaling: unscaled while a call's positions stay within max_position_embeddings.
     * Past it transformers raises the base from the longest call it has seen so far (state kept
     * between calls), which hartley does not follow: such positions are refused.
     */
    type: "dynamic";
    /** Base of the rotary frequencies (rope_theta). */
    theta: number;
    /** The scaling factor (> 0), used only past maxPositions. */
    factor: number;
    /** The positions it runs unscaled (max_position_embeddings). */
    maxPositions: number;
  }
  | {
    /**
     * YaRN: each inverse frequency a blend of itself (extrapolated) and itself divided by `factor`
     * (interpolated), by a linear ramp over the pairs between the correction dimensions of
     * betaFast and betaSlow rotations in originalMaxPositions; cos/sin scaled by attentionFactor.
     */
    type: "yarn";
    /** Base of the rotary frequencies (rope_theta). */
    theta: number;
    /** The interpolation factor (> 0). */
    factor: number;
    /** The context length of pretraining (original_max_position_embeddings). */
    originalMaxPositions: number;
    /** Rotations bounding the extrapolated pairs (beta_fast, 32). */
    betaFast: number;
    /** Rotations bounding the interpolated pairs (beta_slow, 1). */
    betaSlow: number;
    /** Whether the correction range is rounded out to whole pairs (truncate, true). */
    truncate: boolean;
    /** The scale of cos and sin: attention_factor, else from factor (and mscale, mscale_all_dim). */
    attentionFactor: number;
  }
  | {
    /** Llama 3.1's scaling: long wavelengths divided by `factor`, short ones kept, a smooth blend between. */
    type: "llama3";
    /** Base of the rotary frequencies (rope_theta). */
    theta: number;
    /** Divisor of the long-wavelength frequencies (8 for Llama 3.1). */
    factor: number;
    /** Wavelengths above original_max_position_embeddings / this are divided by `factor` (1). */
    lowFreqFactor: number;
    /** Wavelengths below original_max_position_embeddings / this are kept (4). */
    highFreqFactor: number;
    /** The context length of pretraining (8192 for Llama 3.1). */
    originalMaxPositions: number;
  }
  | {
    /**
     * Phi-3's LongRoPE: each inverse frequency divided by its own factor, the short ones for
     * sequences up to originalMaxPositions and the long ones beyond, and cos/sin scaled by
     * `attentionFactor`.
     */
    type: "longrope";
    /** Base of the rotary frequencies (rope_theta). */
    theta: number;
    /** One factor per rotary pair, for sequences up to originalMaxPositions. */
    shortFactor: number[];
    /** One factor per rotary pair, for longer sequences. */
    longFactor: number[];
    /** The context length of pretraining (original_max_position_embeddings). */
    originalMaxPositions: number;
    /** The scale of cos and sin: attention_factor, else √(1 + ln(max/original) / ln(original)). */
    attentionFactor: number;
  };

/**
 * The rotated part of a head: headDim · partial_rotary_factor (transformers' int(), made even),
 * the factor at the top level or, as transformers 5 saves it, in `rope_parameters`.
 */
export function rotaryDim(f: Fields, headDim: number): number {
  const params = ropeParameters(f) as Record<string, unknown> | null;
  const factor = f.raw.partial_rotary_factor ?? params?.partial_rotary_factor ?? 1;
  if (typeof factor !== "number" || !(factor > 0 && factor <= 1)) {
    throw new HfConfigError(
      `${f.path}: partial_rotary_factor must be in (0, 1], got ${JSON.stringify(factor)}`,
    );
  }
  const dim = Math.floor(headDim * factor);
  if (dim < 2 || dim % 2 !== 0) {
    throw new HfConfigError(
      `${f.path}: partial_rotary_factor ${factor} of head_dim ${headDim} rotates ${dim} dimensions; RoPE needs an even number ≥ 2`,
    );
  }
  return dim;
}

/**
 * The config's `rope_parameters` (null when absent). transformers 5 also takes them per attention
 * type, keyed by the names in `layer_types`; this model runs one RoPE, so such a config is read
 * when the types' parameters are all the same, and refused by name otherwise.
 */
function ropeParameters(f: Fields): unknown {
  const params = f.raw.rope_parameters ?? null;
  const types = f.raw.layer_types;
  if (params === null || typeof params !== "object" || !Array.isArray(types)) return params;
  const keys = Object.keys(params);
  if (keys.length === 0 || !keys.every((k) => types.includes(k))) return params;
  const each = Object.values(params as Record<string, unknown>);
  if (each.some((v) => JSON.stringify(v) !== JSON.stringify(each[0]))) {
    throw new HfConfigError(
      `${f.path}: "rope_parameters" differ between the attention types (${keys.join(", ")}); ` +
        `one RoPE for every layer is supported`,
    );
  }
  return each[0];
}

/**
 * RoPE from transformers 5's `rope_parameters` or the older `rope_theta` + `rope_scaling`, for
 * heads whose first `rotaryDim` dimensions rotate (`maxPositions`: max_position_embeddings, its
 * config class's default when absent; `originalDefault`: the config class's
 * original_max_position_embeddings, where it has one).
 */
export function rope(
  f: Fields,
  rotaryDim: number,
  maxPositions: number,
  originalDefault?: number,
): RopeConfig {
  const [given, old] = [ropeParameters(f), f.raw.rope_scaling ?? null];
  // transformers 5 takes rope_scaling over rope_parameters, and rope_theta then from it or the top
  // level alone: a config with both, unequal, is ambiguous
  if (given !== null && old !== null && JSON.stringify(given) !== JSON.stringify(old)) {
    throw new HfConfigError(
      `${f.path}: both "rope_parameters" ${JSON.stringify(given)} and "rope_scaling" ${
        JSON.stringify(old)
      } ` +
        `are given; transformers 5 uses rope_scaling and drops rope_parameters (its rope_theta too): keep one, ` +
        `with its rope_theta`,
    );
  }
  const params = given ?? old;
  const key = f.raw.rope_parameters != null ? "rope_parameters" : "rope_scaling";
  if (params !== null && (typeof params !== "object" || Array.isArray(params))) {
    throw new HfConfigError(`${f.path}: "${key}" must be an object, got ${JSON.stringify(params)}`);
  }
  const p = (params ?? {}) as Record<string, unknown>;
  const type = p.rope_type ?? p.type ?? "default";
  const theta = p.rope_theta ?? f.raw.rope_theta ?? 10000;
  if (typeof theta !== "number" || !(theta > 0)) {
    throw new HfConfigError(`${f.path}: rope_theta must be a positive number, got ${JSON.stringify(theta)}`);
  }
  const positive = (name: string, v = p[name]) => {
    if (typeof v !== "number" || !(v > 0)) {
      throw new HfConfigError(
        `${f.path}: ${key} of type ${JSON.stringify(type)} needs "${name}", a positive number; got ${
          JSON.stringify(v ?? null)
        }`,
      );
    }
    return v;
  };
  // transformers 5's standardize_rope_params: the config's own pretraining context (its config
  // class's default included, as Phi-3's 4096) wins over the scaling's, which defaults to
  // max_position_embeddings
  const original = () =>
    positive(
      "original_max_position_embeddings",
      f.raw.original_max_position_embeddings ?? originalDefault ?? p.original_max_position_embeddings ??
        maxPositions,
    );
  switch (type) {
    case "default":
      return { type: "default", theta };
    case "linear":
      return { type: "linear", theta, factor: positive("factor") };
    case "dynamic":
      return {
        type: "dynamic",
        theta,
        factor: positive("factor"),
        maxPositions,
      };
    case "yarn":
      return yarn(f, key, p, theta, original(), maxPositions);
    case "llama3": {
      const low = positive("low_freq_factor"), high = positive("high_freq_factor");
      if (!(high > low)) {
        throw new HfConfigError(
          `${f.path}: ${key}: high_freq_factor (${high}) must be larger than low_freq_factor (${low})`,
        );
      }
      return {
        type: "llama3",
        theta,
        factor: positive("factor"),
        lowFreqFactor: low,
        highFreqFactor: high,
        originalMaxPositions: original(),
      };
    }
    case "longrope":
    case "su": // the first Phi-3 configs' name for it (transformers renames it)
      return longRope(f, key, p, theta, rotaryDim / 2, originalDefault);
    default:
      throw new HfConfigError(
        `${f.path}: ${key} asks for RoPE scaling type ${JSON.stringify(type)}, which is not supported ` +
          `(supported: "default", "linear", "dynamic", "yarn", "llama3", "longrope")`,
      );
  }
}

/**
 * LongRoPE as transformers 5's _compute_longrope_parameters reads it: the factor lists (one per
 * rotary pair), the pretraining context (original_max_position_embeddings of the config, else of
 * the scaling, else max_position_embeddings) and the cos/sin scale (from the scaling's factor,
 * else max_position_embeddings over the pretraining context).
 */
function longRope(
  f: Fields,
  key: string,
  p: Record<string, unknown>,
  theta: number,
  pairs: number,
  originalDefault?: number,
): RopeConfig {
  const factors = (name: string) => {
    const v = p[name];
    if (!Array.isArray(v) || v.length !== pairs || !v.every((x) => typeof x === "number" && x > 0)) {
      throw new HfConfigError(
        `${f.path}: ${key} of type "longrope" needs "${name}", ${pairs} positive numbers (one per rotary pair)`,
      );
    }
    return v as number[];
  };
  const max = f.int("max_position_embeddings");
  const own = f.raw.original_max_position_embeddings ?? originalDefault;
  const original = typeof own === "number"
    ? own
    : typeof p.original_max_position_embeddings === "number"
    ? p.original_max_position_embeddings
    : max;
  if (!(Number.isInteger(original) && original > 0)) {
    throw new HfConfigError(`${f.path}: original_max_position_embeddings must be a positive integer`);
  }
  // transformers 5: the scaling's factor, else max/original (Phi-3's configs give none)
  if (p.factor != null && !(typeof p.factor === "number" && p.factor > 0)) {
    throw new HfConfigError(`${f.path}: ${key}'s factor must be a positive number`);
  }
  const factor = typeof p.factor === "number" ? p.factor : max / original;
  const given = p.attention_factor;
  if (given !== undefined && given !== null && !(typeof given === "number" && given > 0)) {
    throw new HfConfigError(`${f.path}: ${key}'s attention_factor must be a positive number`);
  }
  return {
    type: "longrope",
    theta,
    shortFactor: factors("short_factor"),
    longFactor: factors("long_factor"),
    originalMaxPositions: original,
    attentionFactor: typeof given === "number"
      ? given
      : factor <= 1
      ? 1
      : Math.sqrt(1 + Math.log(factor) / Math.log(original)),
  };
}

/**
 * YaRN as transformers 5's _compute_yarn_parameters reads it: `factor` (null: max_position_embeddings
 * over the pretraining context), beta_fast and beta_slow (a missing or zero one takes 32 and 1, as
 * Python's `or`), truncate (true), and the cos/sin scale: attention_factor, else
 * mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are set, else mscale(factor)
 * (mscale(s, m) = 0.1·m·ln s + 1, or 1 for s ≤ 1).
 */
function yarn(
  f: Fields,
  key: string,
  p: Record<string, unknown>,
  theta: number,
  original: number,
  maxPositions: number,
): RopeConfig {
  const need = (name: string, ok: (v: unknown) => boolean, what: string) => {
    if (!ok(p[name])) {
      throw new HfConfigError(
        `${f.path}: ${key} of type "yarn" needs "${name}", ${what}; got ${JSON.stringify(p[name] ?? null)}`,
      );
    }
  };
  const positiveNumber = (v: unknown) => typeof v === "number" && v > 0;
  const optional = (ok: (v: unknown) => boolean) => (v: unknown) => v == null || ok(v);
  need("factor", (v) => v === null || positiveNumber(v), "a positive number");
  for (const name of ["beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor"]) {
    need(name, optional((v) => typeof v === "number" && v >= 0), "a number ≥ 0 when given");
  }
  need("truncate", optional((v) => typeof v === "boolean"), "true or false when given");
  const factor = p.factor === null ? maxPositions / original : p.factor as number;
  const mscale = (scale: number, m = 1) => scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
  const [m, mAll] = [p.mscale as number | undefined, p.mscale_all_dim as number | undefined];
  const attentionFactor = typeof p.attention_factor === "number"
    ? p.attention_factor
    : m && mAll
    ? mscale(factor, m) / mscale(factor, mAll)
    : mscale(factor);
  return {
    type: "yarn",
    theta,
    factor,
    originalMaxPositions: original,
    betaFast: (p.beta_fast as number) || 32,
    betaSlow: (p.beta_slow as number) || 1,
    // transformers reads it with get("truncate", True): absent truncates, null (falsy) does not
    truncate: "truncate" in p ? p.truncate === true : true,
    attentionFactor,
  };
}
