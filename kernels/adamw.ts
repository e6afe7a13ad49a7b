/**
 * Optimiser kernels: per-parameter partial sums of squared gradients, the global norm and
 * clip scale (one workgroup, written to a buffer: no readback), and the fused AdamW update,
 * which reads its step-dependent values (learning rate, decay, bias corrections) from a small
 * storage buffer written each step, and the clip scale from the norm buffer.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { BUILTINS, GROUP_ID, linearId, workgroupReduce } from "./indexing.ts";

/** Invocations per workgroup of the norm kernels. */
export const NORM_SUM_WG = 256;

/**
 * `partials[at + w] = Σ g[i]²` over i ≡ w·256 + lid (mod groups·256), one workgroup w per
 * slot. Bindings g, partials; uniform `{ n, at, groups }`.
 */
export const sumSquaresKernel: Kernel = {
  name: "adamw.sum_squares",
  code: `${workgroupReduce(NORM_SUM_WG)}
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
struct P { n: u32, at: u32, groups: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${NORM_SUM_WG}) fn main(${BUILTINS}) {
  let w = ${GROUP_ID};
  var s = 0.0;
  for (var i = w * ${NORM_SUM_WG}u + lid; i < p.n; i = i + p.groups * ${NORM_SUM_WG}u) { s = s + g[i] * g[i]; }
  let total = wg_sum(s, lid);
  if (lid == 0u) { partials[p.at + w] = total; }
}`,
};

/**
 * One workgroup: `norm[0] = sqrt(Σ partials)`, `norm[1] = min(1, maxNorm / (norm + 1e-6))`
 * (PyTorch's clip_grad_norm_ coefficient). Bindings partials, norm; uniform `{ count, maxNorm }`.
 */
export const clipScaleKernel: Kernel = {
  name: "adamw.clip_scale",
  code: `${workgroupReduce(NORM_SUM_WG)}
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> norm: array<f32>;
struct P { count: u32, maxNorm: f32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${NORM_SUM_WG}) fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < p.count; i = i + ${NORM_SUM_WG}u) { s = s + partials[i]; }
  let total = sqrt(wg_sum(s, lid));
  if (lid == 0u) {
    norm[0] = total;
    norm[1] = min(1.0, p.maxNorm / (total + 1e-6));
  }
}`,
};

/**
 * AdamW (PyTorch's, decoupled weight decay): with ĝ = g·norm[1] and
 * `(decay, stepSize, invSqrtBc2) = hyper[3·slot ..]`:
 * m ← β1·m + (1−β1)·ĝ, v ← β2·v + (1−β2)·ĝ², p ← p·decay − stepSize·m / (√v·invSqrtBc2 + ε).
 * Bindings p, g, m, v, hyper, norm; uniform `{ n, slot, beta1, beta2, eps }`.
 */
export const adamwKernel: Kernel = {
  name: "adamw.update",
  code: `
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> hyper: array<f32>;
@group(0) @binding(5) var<storage, read> norm: array<f32>;
struct P { n: u32, slot: u32, beta1: f32, beta2: f32, eps: f32 }
@group(0) @binding(6) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  let gi = g[i] * norm[1];
  let mi = p.beta1 * m[i] + (1.0 - p.beta1) * gi;
  let vi = p.beta2 * v[i] + (1.0 - p.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  let h = 3u * p.slot;
  param[i] = param[i] * hyper[h] - hyper[h + 1u] * mi / (sqrt(vi) * hyper[h + 2u] + p.eps);
}`,
};
