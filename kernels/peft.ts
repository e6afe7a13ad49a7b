/**
 * Small kernels of the adapters (lib/peft/): adding a scaled ΔW into a frozen weight stored
 * as f32 or f16 (merge / unmerge), per-workgroup partial sums (a layer's total spectral
 * energy, summed in float64 on the CPU), and gathering values at given flat indices.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";
import { BUILTINS, linearId, WG } from "./indexing.ts";

/** Values one workgroup of {@link blockSumKernel} sums. */
export const BLOCK_SUM_SPAN = WG * 16;

const addScaledCache = new Map<string, Kernel>();

/**
 * `w[i] = w[i] + p.s · d[i]` for i < p.n, with w stored as `dtype` (f16: computed in f32 and
 * rounded once). Bindings: d (f32), w, params {n, s (f32)}.
 */
export function addScaledKernel(dtype: "f32" | "f16"): Kernel {
  let k = addScaledCache.get(dtype);
  if (!k) {
    const update = dtype === "f16" ? "w[i] = f16(f32(w[i]) + p.s * d[i]);" : "w[i] = w[i] + p.s * d[i];";
    k = {
      name: `peft.add_scaled_${dtype}`,
      code: `${dtype === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> d: array<f32>;
@group(0) @binding(1) var<storage, read_write> w: array<${dtype}>;
struct P { n: u32, s: f32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${WG}) fn main(${BUILTINS}) {
  ${linearId()}
  if (i < p.n) { ${update} }
}`,
    };
    addScaledCache.set(dtype, k);
  }
  return k;
}

/**
 * `partial[g] = Σ x[g·SPAN .. (g+1)·SPAN)` (clipped to p.n) for each workgroup g, in f32 with a
 * tree reduction in workgroup memory. Bindings: x (f32), partial (f32), params {n}.
 */
export const blockSumKernel: Kernel = {
  name: "peft.block_sum",
  code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
struct P { n: u32 }
@group(0) @binding(2) var<uniform> p: P;
var<workgroup> acc: array<f32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(${BUILTINS}) {
  let g = wid.x + wid.y * nwg.x;
  let start = g * ${BLOCK_SUM_SPAN}u;
  var s = 0.0;
  for (var k = 0u; k < ${BLOCK_SUM_SPAN / WG}u; k++) {
    let i = start + k * ${WG}u + lid;
    if (i < p.n) { s += x[i]; }
  }
  acc[lid] = s;
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h = h >> 1u) {
    if (lid < h) { acc[lid] += acc[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partial[g] = acc[0]; }
}`,
};

/** `out[k] = src[idx[k]]` for k < p.n. Bindings: src (f32), idx (u32), out (f32), params {n}. */
export const gatherValuesKernel: Kernel = {
  name: "peft.gather_values",
  code: `
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
struct P { n: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG}) fn main(${BUILTINS}) {
  ${linearId()}
  if (i < p.n) { out[i] = src[idx[i]]; }
}`,
};
