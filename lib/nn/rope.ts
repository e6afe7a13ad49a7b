/**
 * The inverse frequencies of rotary position embeddings, as transformers computes them for
 * each `rope_type` we support (modeling_rope_utils.py): "default" 1/θ^(2i/d); "linear" the same
 * divided by the factor; "llama3" (Llama 3.1 and later) the long wavelengths (above
 * original_max_position_embeddings / low_freq_factor) divided by the factor, the short ones
 * (below original_max_position_embeddings / high_freq_factor) kept, and a linear blend between;
 * "longrope" (Phi-3) each divided by its own factor, the short factors while a call's positions stay
 * within original_max_position_embeddings and the long ones beyond, and cos/sin scaled by its
 * attention factor ({@link ropeScale}); "yarn" a blend of each frequency and it divided by the
 * factor, by a linear ramp over the pairs, and cos/sin scaled by its attention factor; "dynamic"
 * unscaled within max_position_embeddings (past it transformers rescales from the calls it has
 * seen, which is refused here).
 * Every step is rounded to float32 as torch's float32 tensors round it;
 * {@link ropeInverseFrequencies64} is the float64 reference of the same formulas.
 * @module
 */
import type { RopeConfig } from "../io/rope_config.ts";

const f = Math.fround;

/**
 * Inverse frequencies of the `dim / 2` rotary pairs, in float32 arithmetic as transformers', for a
 * call whose positions run up to `length` (longrope's choice of factors; transformers' dynamic
 * update takes the largest position id + 1).
 */
export function ropeInverseFrequencies(rope: RopeConfig, dim: number, length = 0): number[] {
  const base = Array.from({ length: dim / 2 }, (_, i) => f(1 / f(rope.theta ** f((2 * i) / dim))));
  switch (rope.type) {
    case "longrope": {
      const ext = longRopeFactors(rope, length);
      return base.map((_, i) => f(1 / f(ext[i] * f(rope.theta ** f((2 * i) / dim)))));
    }
    case "default":
      return base;
    case "dynamic":
      return withinDynamic(rope, length, base);
    case "linear":
      return base.map((v) => f(v / rope.factor));
    case "yarn": {
      const ramp = yarnRamp(rope, dim, f);
      // torch: pos = θ^(2i/d); 1/pos blended with 1/(factor·pos) by the extrapolation share 1 − ramp
      return base.map((_, i) => {
        const pos = f(rope.theta ** f((2 * i) / dim));
        const extrapolated = f(1 / pos), interpolated = f(1 / f(rope.factor * pos));
        const share = f(1 - ramp[i]);
        return f(f(interpolated * f(1 - share)) + f(extrapolated * share));
      });
    }
    case "llama3": {
      const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: old } = rope;
      const lowWavelen = old / low, highWavelen = old / high;
      // torch divides a number by a tensor as reciprocal(tensor) · number
      return base.map((inv) => {
        const wavelen = f(f(1 / inv) * f(2 * Math.PI));
        const scaled = wavelen > lowWavelen ? f(inv / factor) : inv;
        if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
        const smooth = f(f(f(f(1 / wavelen) * old) - low) / (high - low));
        return f(f(f(f(1 - smooth) * scaled) / factor) + f(smooth * scaled));
      });
    }
  }
}

/** The same inverse frequencies in float64 (the CPU reference of the models). */
export function ropeInverseFrequencies64(rope: RopeConfig, dim: number, length = 0): number[] {
  const base = Array.from({ length: dim / 2 }, (_, i) => 1 / rope.theta ** ((2 * i) / dim));
  switch (rope.type) {
    case "longrope": {
      const ext = longRopeFactors(rope, length);
      return base.map((v, i) => v / ext[i]);
    }
    case "default":
      return base;
    case "dynamic":
      return withinDynamic(rope, length, base);
    case "linear":
      return base.map((v) => v / rope.factor);
    case "yarn": {
      const ramp = yarnRamp(rope, dim);
      return base.map((v, i) => v / rope.factor * ramp[i] + v * (1 - ramp[i]));
    }
    case "llama3": {
      const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: old } = rope;
      return base.map((inv) => {
        const wavelen = 2 * Math.PI / inv;
        if (wavelen < old / high) return inv;
        if (wavelen > old / low) return inv / factor;
        const smooth = (old / wavelen - low) / (high - low);
        return (1 - smooth) * inv / factor + smooth * inv;
      });
    }
  }
}

/** LongRoPE's factors for a call whose positions run up to `length`. */
function longRopeFactors(rope: RopeConfig & { type: "longrope" }, length: number): number[] {
  return length > rope.originalMaxPositions ? rope.longFactor : rope.shortFactor;
}

/**
 * YaRN's ramp over the `dim / 2` pairs (transformers' linear_ramp_factor): 0 up to the correction
 * dimension of betaFast rotations in originalMaxPositions (those pairs extrapolate), 1 from that
 * of betaSlow on (they interpolate), linear between; the bounds rounded out when `truncate`. `round`:
 * each step's rounding (Math.fround for torch's float32 arange).
 */
function yarnRamp(rope: RopeConfig & { type: "yarn" }, dim: number, round = (x: number) => x): number[] {
  const correction = (rotations: number) =>
    (dim * Math.log(rope.originalMaxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(rope.theta));
  let low = correction(rope.betaFast), high = correction(rope.betaSlow);
  if (rope.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  [low, high] = [Math.max(low, 0), Math.min(high, dim - 1)];
  if (low === high) high += 0.001; // transformers' guard against a zero-width ramp
  return Array.from(
    { length: dim / 2 },
    (_, i) => Math.min(Math.max(round(round(i - low) / round(high - low)), 0), 1),
  );
}

/** Dynamic NTK's frequencies (`base`, unscaled) for a call whose positions run up to `length`. */
function withinDynamic(rope: RopeConfig & { type: "dynamic" }, length: number, base: number[]): number[] {
  if (length > rope.maxPositions) {
    throw new Error(
      `RoPE "dynamic" is run unscaled up to max_position_embeddings (${rope.maxPositions}); ` +
        `past it transformers rescales from the longest call it has seen, which hartley does not: ` +
        `${length} positions are refused (keep rows within ${rope.maxPositions} tokens)`,
    );
  }
  return base;
}

/** The scale of the cos and sin tables: longrope's and yarn's attention factor, else 1. */
export function ropeScale(rope: RopeConfig): number {
  return rope.type === "longrope" || rope.type === "yarn" ? rope.attentionFactor : 1;
}
