/**
 * Drawing the next token on the CPU: transformers' repetition penalty and its sampling warpers
 * (temperature, top-k, top-p, min-p) applied to one row's logits. The GPU's draws
 * (lib/tensor/ops/sample.ts) follow these and are tested against `samplingCandidates`.
 * @module
 */
import type { Prng } from "../spectral/prng.ts";

/**
 * transformers' repetition penalty on one row's logits, in place: each token of `ids` (once,
 * however often it occurs) has its logit divided by `penalty` when positive, multiplied otherwise.
 */
export function applyRepetitionPenalty(logits: Float32Array, ids: readonly number[], penalty: number): void {
  for (const id of new Set(ids)) {
    if (id < 0 || id >= logits.length) continue;
    const l = logits[id];
    logits[id] = l < 0 ? l * penalty : l / penalty;
  }
}

/** How a sampled token is drawn: transformers' warpers, applied in this order. */
export interface SamplingCuts {
  /** The logits are divided by it (> 0). */
  temperature: number;
  /** The k most probable tokens and every token tied with the k-th (0: all). */
  topK: number;
  /** Then those whose probabilities before them hold less than topP of the mass left (1: all). */
  topP: number;
  /** Then those at least minP times as probable as the most probable one (0: all). */
  minP: number;
}

/** A token drawn from the tokens and weights the `cuts` leave (`samplingCandidates`). */
export function sampleToken(logits: Float32Array, cuts: SamplingCuts, rng: Prng): number {
  if (!(cuts.topK > 0 && cuts.topK < logits.length) && cuts.topP >= 1 && cuts.minP <= 0) {
    const { w, total } = weightsOf(logits, cuts.temperature);
    return draw(rng.uniform() * total, w);
  }
  const { ids, weights } = samplingCandidates(logits, cuts);
  return ids[draw(rng.uniform() * weights.reduce((a, b) => a + b, 0), weights)];
}

/**
 * The tokens the {@link SamplingCuts} keep, most probable first (ties: the smaller id first), with
 * their weights exp((logit − max) / temperature) in float64: what {@link sampleToken} draws from,
 * and what the GPU's draws (`sampleTokens`) are tested against.
 */
export function samplingCandidates(
  logits: Float32Array,
  cuts: SamplingCuts,
): { ids: number[]; weights: Float64Array } {
  const { temperature, topK, topP, minP } = cuts;
  const { w, total } = weightsOf(logits, temperature);
  const cut = topK > 0 && topK < logits.length;
  // the candidates, most probable first: the heaviest tokens sorted, not the whole vocabulary
  const byLogit = (a: number, b: number) => logits[b] - logits[a] || a - b;
  const enough = cut ? (n: number) => n >= topK : (_: number, held: number) => held >= topP * total;
  // a floor at min-p, unless top-p weighs the top k's tokens under it
  let order = heaviest(w, enough, cut && topP < 1 ? 0 : minP).sort(byLogit);
  if (cut) {
    // transformers keeps every token as probable as the k-th
    let end = topK;
    while (end < order.length && logits[order[end]] === logits[order[topK - 1]]) end++;
    order = order.slice(0, end);
  }
  if (topP < 1) {
    // keep each token while the tokens before it hold less than topP of the mass (of the top k)
    const mass = topP * (cut ? order.reduce((s, i) => s + w[i], 0) : total);
    let keep = 0, before = 0;
    while (keep < order.length && before < mass) before += w[order[keep++]];
    order = order.slice(0, keep);
  }
  // the most probable token weighs 1, so min-p keeps the weights of at least minP
  if (minP > 0) order = order.filter((i) => w[i] >= minP);
  return { ids: order, weights: Float64Array.from(order, (i) => w[i]) };
}

/** exp((logit − max) / temperature) of each token, and their sum. */
function weightsOf(logits: Float32Array, temperature: number): { w: Float64Array; total: number } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const w = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += w[i] = Math.exp((logits[i] - max) / temperature);
  return { w, total };
}

/** The index where the running sum of `weights` passes `u` (the last one if it never does). */
function draw(u: number, weights: Float64Array): number {
  for (let j = 0; j < weights.length; j++) {
    u -= weights[j];
    if (u < 0) return j;
  }
  return weights.length - 1;
}

/**
 * The tokens whose weight reaches a threshold, lowered until they are `enough` (by their count and
 * the weight they hold) or it reaches `floor`: every token a top-k or top-p cut keeps is among
 * them, since a lighter one comes after all of them, and there are far fewer of them than the
 * vocabulary to sort. A min-p cut keeps none below its `floor`.
 */
function heaviest(
  w: Float64Array,
  enough: (count: number, held: number) => boolean,
  floor: number,
): number[] {
  for (let threshold = 1 / 64;; threshold /= 64) {
    const t = Math.max(threshold, floor);
    const picked: number[] = [];
    let held = 0;
    for (let i = 0; i < w.length; i++) {
      if (w[i] >= t) [picked.push(i), held += w[i]];
    }
    if (enough(picked.length, held) || t === floor || picked.length === w.length) return picked;
  }
}
