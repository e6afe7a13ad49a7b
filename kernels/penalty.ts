/**
 * The repetition penalty of generation (transformers' RepetitionPenaltyLogitsProcessor): the
 * logit of a token already in a row's text is divided by the penalty when positive and
 * multiplied by it otherwise. A row's tokens are kept as flags over the vocabulary, so a token
 * seen twice is penalised once, and decoding marks each token it picks on the GPU.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { BUILTINS, linearId } from "./indexing.ts";

/**
 * out[i] = the logit, penalised where seen[i] ≠ 0. Bindings: 0 logits (f32), 1 seen (i32
 * flags, the logits' shape), 2 out (f32); uniform `{ n, penalty }`. One invocation per logit.
 */
export const repetitionPenaltyKernel: Kernel = {
  name: "penalty.repetition",
  code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> seen: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
struct P { n: u32, penalty: f32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  let v = x[i];
  y[i] = select(v, select(v / p.penalty, v * p.penalty, v < 0.0), seen[i] != 0);
}`,
};

/**
 * seen[r·vocab + ids[r]] = 1 for each row r. Bindings: 0 ids (i32, one per row), 1 seen (i32);
 * uniform `{ rows, vocab }`. One invocation per row.
 */
export const markSeenKernel: Kernel = {
  name: "penalty.mark_seen",
  code: `@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read_write> seen: array<i32>;
struct P { rows: u32, vocab: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId("r")}
  if (r >= p.rows) { return; }
  let id = u32(ids[r]);
  if (id < p.vocab) { seen[r * p.vocab + id] = 1; }
}`,
};
