/**
 * Row softmax over the last dimension with optional attention masking, and its gradient.
 * Row r of a [..., T, S] score tensor is query position `r % T` of batch entry
 * `r / rowsPerBatch`; key j is allowed when `j ≤ i + off` (causal, bottom-right aligned) and
 * `i + off − j < window` (sliding-window attention; 2³² − 1: none), and `mask[b·S + j] ≠ 0` (padding). Fully masked rows give zeros. One workgroup per row. Variants
 * apply attention's dropout in the same pass (forward: the probabilities and their dropped copy;
 * backward: the mask on the incoming gradient).
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { DROPOUT_MASK } from "./elementwise.ts";
import { BUILTINS, GROUP_ID, NEG_INF, workgroupReduce } from "./indexing.ts";

const cache = new Map<string, Kernel>();

/**
 * `y = softmax(scale·x)` per row with masking, `wg` invocations per row. Bindings x, [mask
 * (i32),] y, [yd,]; uniform `{ rows, s, t, off, rowsPerBatch, scale, key, threshold, dscale,
 * run, stride, window }`.
 * With `dropout`, yd gets y after dropout (the mask of `dropoutKernel` for flat element index e:
 * `DROPOUT_MASK`, scaled by dscale), so both come from one pass.
 */
export function softmaxKernel(causal: boolean, masked: boolean, wg = 128, dropout = false): Kernel {
  const key = `fwd:${causal}:${masked}:${wg}:${dropout}`;
  let k = cache.get(key);
  if (k) return k;
  const conds = [
    causal ? "j <= qi + p.off && qi + p.off - j < p.window" : "",
    masked ? "mask[bi * p.s + j] != 0" : "",
  ].filter((c) => c);
  const allowed = conds.length ? conds.join(" && ") : "true";
  const binds = ["var<storage, read> x: array<f32>"];
  if (masked) binds.push("var<storage, read> mask: array<i32>");
  binds.push("var<storage, read_write> y: array<f32>");
  if (dropout) binds.push("var<storage, read_write> yd: array<f32>");
  k = {
    name: `softmax.forward${causal ? "_causal" : ""}${masked ? "_masked" : ""}${dropout ? "_dropout" : ""}`,
    code: `${workgroupReduce(wg)}${dropout ? DROPOUT_MASK : ""}
${binds.map((b, i) => `@group(0) @binding(${i}) ${b};`).join("\n")}
struct P { rows: u32, s: u32, t: u32, off: u32, rowsPerBatch: u32, scale: f32, key: u32, threshold: u32, dscale: f32, run: u32, stride: u32, window: u32 }
@group(0) @binding(${binds.length}) var<uniform> p: P;
@compute @workgroup_size(${wg}) fn main(${BUILTINS}) {
  let row = ${GROUP_ID};
  if (row >= p.rows) { return; }
  let base = row * p.s;
  let qi = row % p.t;
  let bi = row / p.rowsPerBatch;
  var mx = ${NEG_INF};
  for (var j = lid; j < p.s; j = j + ${wg}u) {
    if (${allowed}) { mx = max(mx, x[base + j] * p.scale); }
  }
  // a row of −∞ alone (or none allowed) gives zeros, not exp(−∞ − (−∞))
  let rowMax = wg_max(mx, lid);
  mx = select(rowMax, 0.0, rowMax == ${NEG_INF});
  var sum = 0.0;
  for (var j = lid; j < p.s; j = j + ${wg}u) {
    if (${allowed}) { sum = sum + exp(x[base + j] * p.scale - mx); }
  }
  sum = wg_sum(sum, lid);
  let inv = select(0.0, 1.0 / sum, sum > 0.0);
  for (var j = lid; j < p.s; j = j + ${wg}u) {
    var v = 0.0;
    if (${allowed}) { v = exp(x[base + j] * p.scale - mx) * inv; }
    y[base + j] = v;${dropout ? "\n    yd[base + j] = select(0.0, v * p.dscale, kept_(base + j));" : ""}
  }
}`,
  };
  cache.set(key, k);
  return k;
}

/**
 * `dx = scale · y · (g − Σ y·g)` per row, `wg` invocations per row, with g = dy, or with
 * `dropout` g = dy through the forward's dropout mask (the gradient of yd). Bindings y, dy, dx;
 * uniform `{ rows, s, scale, key, threshold, dscale, run, stride }`.
 */
export function softmaxBackwardKernel(wg = 128, dropout = false): Kernel {
  const key = `bwd:${wg}:${dropout}`;
  let k = cache.get(key);
  if (k) return k;
  const g = (e: string) => dropout ? `select(0.0, dy[${e}] * p.dscale, kept_(${e}))` : `dy[${e}]`;
  k = {
    name: `softmax.backward${dropout ? "_dropout" : ""}`,
    code: `${workgroupReduce(wg)}${dropout ? DROPOUT_MASK : ""}
@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
struct P { rows: u32, s: u32, scale: f32, key: u32, threshold: u32, dscale: f32, run: u32, stride: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${wg}) fn main(${BUILTINS}) {
  let row = ${GROUP_ID};
  if (row >= p.rows) { return; }
  let base = row * p.s;
  var dot = 0.0;
  for (var j = lid; j < p.s; j = j + ${wg}u) { dot = dot + y[base + j] * ${g("base + j")}; }
  dot = wg_sum(dot, lid);
  for (var j = lid; j < p.s; j = j + ${wg}u) {
    dx[base + j] = p.scale * y[base + j] * (${g("base + j")} - dot);
  }
}`,
  };
  cache.set(key, k);
  return k;
}
