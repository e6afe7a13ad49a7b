/**
 * WGSL code generation shared by the tensor kernels: the linear invocation id over a 2-D
 * dispatch grid, and unrolled strided-offset arithmetic (no runtime-indexed local arrays:
 * every dimension is a named uniform field).
 * @module
 */

/** Invocations per workgroup of the one-element-per-invocation kernels. */
export const WG = 256;

/** Compute-entry builtins for kernels dispatched with `grid(gpu, groups)`. */
export const BUILTINS =
  "@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32";

/** The linear workgroup index of a `grid(gpu, groups)` dispatch, as a WGSL expression. */
export const GROUP_ID = "(wid.x + wid.y * nwg.x)";

/**
 * WGSL −∞, the start of a running maximum: rows whose entries are all ≤ −3e38 (torch's finfo.min
 * masks) keep their order, where a finite start would win over them.
 */
export const NEG_INF = "bitcast<f32>(0xff800000u)";

/** `let i = ...;` — the linear invocation id with `wg` invocations per workgroup. */
export function linearId(name = "i", wg = WG): string {
  return `let ${name} = ${GROUP_ID} * ${wg}u + lid;`;
}

/**
 * Uniform struct fields for a strided iteration of rank `rank`: sizes `d0..` and, per stride
 * set `s` in `sets`, strides `s0..` (all u32).
 */
export function stridedFields(rank: number, sets: readonly string[]): string {
  const f: string[] = [];
  for (let k = 0; k < rank; k++) f.push(`d${k}: u32`);
  for (const s of sets) for (let k = 0; k < rank; k++) f.push(`${s}${k}: u32`);
  return f.join(", ");
}

/**
 * WGSL statements declaring `var o_<s>: u32` for each stride set `s`: the offset of linear
 * index `idx` (row-major over sizes `<dim>0..<dim>{rank-1}`) under strides `<s>0..`, all read
 * from the uniform `p`. Unrolled per dimension.
 */
export function stridedOffsets(idx: string, rank: number, sets: readonly string[], dim = "d"): string {
  const lines = [`var rem_ = ${idx};`, ...sets.map((s) => `var o_${s} = 0u;`)];
  for (let k = rank - 1; k >= 0; k--) {
    lines.push(k > 0 ? `{ let c = rem_ % p.${dim}${k}; rem_ = rem_ / p.${dim}${k};` : `{ let c = rem_;`);
    for (const s of sets) lines.push(`  o_${s} += c * p.${s}${k};`);
    lines.push("}");
  }
  return lines.join("\n  ");
}

/** The bits of an f32 as a u32, for packing float fields into a Uint32Array uniform. */
export function f32bits(x: number): number {
  F32[0] = x;
  return U32[0];
}
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/**
 * Invocations of a one-workgroup-per-row kernel for rows of `length`: 32 for rows of up to 256
 * (each invocation takes up to 8 elements), else 128. A 128-wide group over a 24-element row
 * idles most of its invocations and pays seven barrier levels per reduction: on lavapipe that
 * made softmax and LayerNorm over short rows several times slower than the same work on 32
 * invocations (see `deno task bench-step --models=demo --profile`). On the H100, the attention
 * softmax over rows of 128 ran at 0.6 TB/s with 128 invocations a row.
 */
export function rowWorkgroupSize(length: number): 32 | 128 {
  return length <= 256 ? 32 : 128;
}

/**
 * A workgroup-wide sum and max over `wg` invocations (a power of two) through shared memory.
 * Call from uniform control flow only; every invocation gets the result.
 */
export function workgroupReduce(wg: number): string {
  return `
var<workgroup> red_: array<f32, ${wg}>;
fn wg_sum(v: f32, lid: u32) -> f32 {
  red_[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red_[lid] = red_[lid] + red_[lid + s]; }
    workgroupBarrier();
  }
  let r = red_[0];
  workgroupBarrier();
  return r;
}
fn wg_max(v: f32, lid: u32) -> f32 {
  red_[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red_[lid] = max(red_[lid], red_[lid + s]); }
    workgroupBarrier();
  }
  let r = red_[0];
  workgroupBarrier();
  return r;
}`;
}
