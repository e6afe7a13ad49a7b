/**
 * Optimiser kernels, each over several parameters a dispatch: partial sums of squared
 * gradients, the global norm and clip scale (one workgroup, written to a buffer: no readback),
 * and the fused AdamW update, which reads its step-dependent values (learning rate, decay, bias
 * corrections) from a small storage buffer written each step, and the clip scale from the norm
 * buffer.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { BUILTINS, GROUP_ID, workgroupReduce } from "./indexing.ts";

/** Invocations per workgroup of the norm kernels. */
export const NORM_SUM_WG = 256;

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

/** Most parameters one multi-parameter dispatch takes (4 storage buffers each for the update). */
export const MULTI_SLOTS = 8;

/**
 * WGSL: which of `slots` parameters the workgroup `w` serves, by each slot's first workgroup
 * (`p.s[k].z`, ascending), as one `if` per slot around `body(k)` with `lw` (the workgroup's
 * index within its slot) in scope.
 */
function perSlot(slots: number, body: (k: number) => string): string {
  return Array.from({ length: slots }, (_, k) => {
    const below = k + 1 < slots ? ` && w < p.s[${k + 1}].z` : "";
    return `  if (w >= p.s[${k}].z${below}) {
    let lw = w - p.s[${k}].z;
${body(k)}
  }`;
  }).join("\n");
}

const multiAdamw = new Map<number, Kernel>();

/**
 * AdamW (PyTorch's, decoupled weight decay) over `slots` parameters in one dispatch: with
 * ĝ = g·norm[1] and `(decay, stepSize, invSqrtBc2) = hyper[3·s[k].y ..]`,
 * m ← β1·m + (1−β1)·ĝ, v ← β2·v + (1−β2)·ĝ², p ← p·decay − stepSize·m / (√v·invSqrtBc2 + ε).
 * Slot k binds p_k, g_k, m_k, v_k (bindings 4k … 4k + 3), then hyper and norm; uniform
 * `{ s: array<vec4<u32>, slots>, beta1, beta2, eps }` with s[k] = (n, hyper slot, first
 * workgroup, 0). RoBERTa-base's 24 SSH adapters and 4 head tensors take 4 dispatches, not 28.
 */
export function adamwMultiKernel(slots: number): Kernel {
  let k = multiAdamw.get(slots);
  if (k) return k;
  const decl = Array.from({ length: slots }, (_, j) =>
    [
      `@group(0) @binding(${4 * j}) var<storage, read_write> p${j}: array<f32>;`,
      `@group(0) @binding(${4 * j + 1}) var<storage, read> g${j}: array<f32>;`,
      `@group(0) @binding(${4 * j + 2}) var<storage, read_write> m${j}: array<f32>;`,
      `@group(0) @binding(${4 * j + 3}) var<storage, read_write> v${j}: array<f32>;`,
    ].join("\n")).join("\n");
  const update = (j: number) =>
    `    let i = lw * 256u + lid;
    if (i < p.s[${j}].x) {
      let gi = g${j}[i] * norm[1];
      let mi = p.beta1 * m${j}[i] + (1.0 - p.beta1) * gi;
      let vi = p.beta2 * v${j}[i] + (1.0 - p.beta2) * gi * gi;
      m${j}[i] = mi;
      v${j}[i] = vi;
      let h = 3u * p.s[${j}].y;
      p${j}[i] = p${j}[i] * hyper[h] - hyper[h + 1u] * mi / (sqrt(vi) * hyper[h + 2u] + p.eps);
    }`;
  k = {
    name: `adamw.update_multi${slots}`,
    code: `${decl}
@group(0) @binding(${4 * slots}) var<storage, read> hyper: array<f32>;
@group(0) @binding(${4 * slots + 1}) var<storage, read> norm: array<f32>;
struct P { s: array<vec4<u32>, ${slots}>, beta1: f32, beta2: f32, eps: f32 }
@group(0) @binding(${4 * slots + 2}) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  let w = ${GROUP_ID};
${perSlot(slots, update)}
}`,
  };
  multiAdamw.set(slots, k);
  return k;
}

const multiSums = new Map<number, Kernel>();

/**
 * Partial sums of squared gradients, `slots` gradients a dispatch: slot k binds g_k (binding k),
 * then partials; uniform `{ s: array<vec4<u32>, slots> }` with s[k] = (n, at, first workgroup,
 * groups), and workgroup w of slot k writes `partials[at + w] = Σ g_k[i]²` over
 * i ≡ w·256 + lid (mod groups·256).
 */
export function sumSquaresMultiKernel(slots: number): Kernel {
  let k = multiSums.get(slots);
  if (k) return k;
  const decl = Array.from(
    { length: slots },
    (_, j) => `@group(0) @binding(${j}) var<storage, read> g${j}: array<f32>;`,
  ).join("\n");
  const sum = (j: number) =>
    `    var s = 0.0;
    for (var i = lw * ${NORM_SUM_WG}u + lid; i < p.s[${j}].x; i = i + p.s[${j}].w * ${NORM_SUM_WG}u) {
      s = s + g${j}[i] * g${j}[i];
    }
    let total = wg_sum(s, lid);
    if (lid == 0u) { partials[p.s[${j}].y + lw] = total; }`;
  k = {
    name: `adamw.sum_squares_multi${slots}`,
    code: `${workgroupReduce(NORM_SUM_WG)}
${decl}
@group(0) @binding(${slots}) var<storage, read_write> partials: array<f32>;
struct P { s: array<vec4<u32>, ${slots}> }
@group(0) @binding(${slots + 1}) var<uniform> p: P;
@compute @workgroup_size(${NORM_SUM_WG}) fn main(${BUILTINS}) {
  let w = ${GROUP_ID};
${perSlot(slots, sum)}
}`,
  };
  multiSums.set(slots, k);
  return k;
}
