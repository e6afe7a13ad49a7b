/**
 * How transformers' `_init_weights` starts a parameter, by its key: every bias at 0, every norm
 * weight (LayerNorm, RMSNorm, GPT-2's `ln_*`) at 1, everything else random with the model's
 * `initializer_range`. One rule for new heads (lib/nn/load.ts), models made from scratch
 * (lib/train/init.ts) and benchmark weights.
 * @module
 */

/** What a parameter starts as: a constant, or random values of the init's standard deviation. */
export type InitKind = "zeros" | "ones" | "random";

const NORM_WEIGHT = /(^|\.)(ln_\w+|\w*norm\w*)\.weight$/i;

/** The initialisation of the parameter stored under `key`. */
export function initKind(key: string): InitKind {
  if (key.endsWith(".bias")) return "zeros";
  return NORM_WEIGHT.test(key) ? "ones" : "random";
}
