/**
 * Sampling the next token on the GPU, as `sampleToken` (lib/infer/sampling.ts) does on the CPU:
 * softmax(logits / temperature) cut to the k most probable tokens (k ≤ {@link SAMPLE_MAX_K}) and
 * those tied with the k-th, then to those whose probabilities before them hold less than top-p of
 * the mass, then to those at least min-p times as probable as the first, and one of those drawn by
 * inverse CDF with a uniform number hashed from (seed, step, row). One workgroup per row finds the
 * candidates by a pass over the logits each, each taking the most probable token after the last one
 * in (logit descending, id ascending) order, so ties fall as the CPU's sort leaves them; past the
 * k-th, a pass that finds no tie with it ends the search.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { PCG } from "./elementwise.ts";
import { BUILTINS, GROUP_ID } from "./indexing.ts";

/** The largest top-k the GPU sampler takes (larger cuts sample on the CPU). */
export const SAMPLE_MAX_K = 64;
/** Candidates kept at most: the k and the tokens tied with the k-th (ties past this are cut). */
export const SAMPLE_CANDIDATES = 2 * SAMPLE_MAX_K;
const WG = 256;

/**
 * Bindings: 0 logits (f32, rows × vocab), 1 picked (i32, written at `p.at + row`); uniform
 * `{ rows, vocab, k, topP, invTemp, seed, step, at, minP }` with 1 ≤ k ≤ min(vocab, SAMPLE_MAX_K).
 * Dispatch at least one workgroup per row (linear grid).
 */
export const sampleKernel: Kernel = {
  name: "sample.top_k_top_p_min_p",
  code: `${PCG}
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> picked: array<i32>;
struct P { rows: u32, vocab: u32, k: u32, topP: f32, invTemp: f32, seed: u32, step: u32, at: u32, minP: f32 }
@group(0) @binding(2) var<uniform> p: P;
var<workgroup> bestV: array<f32, ${WG}>;
var<workgroup> bestI: array<u32, ${WG}>;
var<workgroup> topV: array<f32, ${SAMPLE_CANDIDATES}>;
var<workgroup> topI: array<u32, ${SAMPLE_CANDIDATES}>;
var<workgroup> found: u32;

// (v, i) comes before (w, j) in the candidates' order: larger logit first, then smaller id
fn before_(v: f32, i: u32, w: f32, j: u32) -> bool { return v > w || (v == w && i < j); }

@compute @workgroup_size(${WG}) fn main(${BUILTINS}) {
  let row = ${GROUP_ID};
  if (row >= p.rows) { return; }
  let base = row * p.vocab;
  var lastV = 0.0;
  var lastI = 0xffffffffu;
  var n = 0u;
  loop {
    // the first token after (lastV, lastI) in the order, over this invocation's share of the row
    var v = 0.0;
    var i = 0xffffffffu;
    for (var t = lid; t < p.vocab; t = t + ${WG}u) {
      let x = logits[base + t];
      let after = n == 0u || before_(lastV, lastI, x, t);
      if (after && (i == 0xffffffffu || before_(x, t, v, i))) { v = x; i = t; }
    }
    bestV[lid] = v;
    bestI[lid] = i;
    workgroupBarrier();
    for (var half = ${WG / 2}u; half > 0u; half = half >> 1u) {
      if (lid < half) {
        let j = bestI[lid + half];
        if (j != 0xffffffffu && (bestI[lid] == 0xffffffffu || before_(bestV[lid + half], j, bestV[lid], bestI[lid]))) {
          bestV[lid] = bestV[lid + half];
          bestI[lid] = j;
        }
      }
      workgroupBarrier();
    }
    lastV = bestV[0];
    lastI = bestI[0];
    if (lid == 0u) {
      // past the k-th, a token joins only when tied with it (transformers' top-k keeps those)
      let joins = lastI != 0xffffffffu && (n < p.k || lastV == topV[p.k - 1u]);
      if (joins) { topV[n] = lastV; topI[n] = lastI; }
      found = select(n, n + 1u, joins) | select(0x80000000u, 0u, joins && n + 1u < ${SAMPLE_CANDIDATES}u);
    }
    // the barrier of the uniform load also keeps the next pass from overwriting bestV before it is read
    let state = workgroupUniformLoad(&found);
    if (state >= 0x80000000u) { break; }
    n = n + 1u;
  }
  if (lid != 0u) { return; }
  let count = found & 0x7fffffffu;
  // weights relative to the most probable token; the top-p cut over the candidates; min-p; the draw
  var total = 0.0;
  for (var c = 0u; c < count; c = c + 1u) { total = total + exp((topV[c] - topV[0]) * p.invTemp); }
  var keep = 0u;
  var held = 0.0;
  let mass = p.topP * total;
  loop {
    if (keep >= count || (p.topP < 1.0 && held >= mass)) { break; }
    let w = exp((topV[keep] - topV[0]) * p.invTemp);
    if (keep > 0u && w < p.minP) { break; }
    held = held + w;
    keep = keep + 1u;
  }
  // a uniform number in [0, 1) hashed from (seed, step, row), times the kept mass
  var u = f32(pcg_(pcg_(pcg_(p.seed) + p.step) + row) >> 8u) / 16777216.0 * held;
  var chosen = keep - 1u;
  for (var c = 0u; c < keep; c = c + 1u) {
    u = u - exp((topV[c] - topV[0]) * p.invTemp);
    if (u < 0.0) { chosen = c; break; }
  }
  picked[p.at + row] = i32(topI[chosen]);
}`,
};
