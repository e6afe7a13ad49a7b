/**
 * Cross-entropy over the last dimension with an ignore index: per-row log-sum-exp and loss
 * (one workgroup per row), a single-workgroup deterministic total and count of the targets
 * that count, and the gradient `(softmax − onehot) · upstream / count` read entirely from
 * GPU buffers (no readback).
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { BUILTINS, GROUP_ID, linearId, NEG_INF, workgroupReduce } from "./indexing.ts";

/** Invocations per row (and of the single total workgroup). */
export const LOSS_WG = 256;

const VALID = "(tg != p.ignore && tg >= 0 && tg < i32(p.v))";

/**
 * Per row r of a band (lib/gpu/bands.ts): the row's log-sum-exp as two numbers, `lse[2(first + r)]`
 * = max x and `lse[2(first + r) + 1]` = log Σ exp(x − max), and `rowLoss[first + r]` = the second
 * − (x[target] − max) (0 for an ignored or out-of-range target): kept apart, neither is rounded at
 * the scale of the largest logit, as torch's log_softmax keeps them. The band's row r starts at
 * element `base + r·v` of the logits' binding. Bindings logits, targets (i32), rowLoss, lse;
 * uniform `{ rows, v, ignore, first, base }`.
 */
export const crossEntropyRowsKernel: Kernel = {
  name: "loss.cross_entropy_rows",
  code: `${workgroupReduce(LOSS_WG)}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> rowLoss: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
struct P { rows: u32, v: u32, ignore: i32, first: u32, base: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${LOSS_WG}) fn main(${BUILTINS}) {
  let r = ${GROUP_ID};
  if (r >= p.rows) { return; }
  let row = p.first + r;
  let base = p.base + r * p.v;
  var mx = ${NEG_INF};
  for (var j = lid; j < p.v; j = j + ${LOSS_WG}u) { mx = max(mx, x[base + j]); }
  mx = wg_max(mx, lid);
  var s = 0.0;
  for (var j = lid; j < p.v; j = j + ${LOSS_WG}u) { s = s + exp(x[base + j] - mx); }
  let l = log(wg_sum(s, lid));
  if (lid == 0u) {
    let tg = targets[row];
    lse[2u * row] = mx;
    lse[2u * row + 1u] = l;
    var loss = 0.0;
    if ${VALID} { loss = l - (x[base + u32(tg)] - mx); }
    rowLoss[row] = loss;
  }
}`,
};

/**
 * One workgroup: `out[0] = Σ rowLoss / count` (mean; 0 when nothing counts) or `Σ rowLoss`
 * (sum), `count[0]` = number of targets that count. Bindings rowLoss, targets, out, count;
 * uniform `{ rows, v, ignore, mean }`.
 */
export const crossEntropyTotalKernel: Kernel = {
  name: "loss.cross_entropy_total",
  code: `${workgroupReduce(LOSS_WG)}
@group(0) @binding(0) var<storage, read> rowLoss: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> count: array<f32>;
struct P { rows: u32, v: u32, ignore: i32, mean: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${LOSS_WG}) fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var c = 0.0;
  for (var r = lid; r < p.rows; r = r + ${LOSS_WG}u) {
    s = s + rowLoss[r];
    let tg = targets[r];
    if ${VALID} { c = c + 1.0; }
  }
  let total = wg_sum(s, lid);
  let n = wg_sum(c, lid);
  if (lid == 0u) {
    count[0] = n;
    out[0] = select(total, select(0.0, total / n, n > 0.0), p.mean != 0u);
  }
}`,
};

/**
 * `dx = (exp((x − max) − log Σ) − onehot(target)) · gy[0] · (mean ? 1/count : 1)`, 0 on rows that do
 * not count, over the `n` elements of a band of rows from row `first` (element `base` of the
 * logits' and dx's bindings, which share a layout). Bindings logits, targets, lse, gy, count,
 * dx; uniform `{ n, v, ignore, mean, first, base }`.
 */
export const crossEntropyBackwardKernel: Kernel = {
  name: "loss.cross_entropy_backward",
  code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> gy: array<f32>;
@group(0) @binding(4) var<storage, read> count: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
struct P { n: u32, v: u32, ignore: i32, mean: u32, first: u32, base: u32 }
@group(0) @binding(6) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  let row = p.first + i / p.v;
  let j = i % p.v;
  let tg = targets[row];
  var v = 0.0;
  if ${VALID} {
    let n = count[0];
    let scale = gy[0] * select(1.0, select(0.0, 1.0 / n, n > 0.0), p.mean != 0u);
    v = (exp((x[p.base + i] - lse[2u * row]) - lse[2u * row + 1u]) - select(0.0, 1.0, u32(tg) == j)) * scale;
  }
  dx[p.base + i] = v;
}`,
};
