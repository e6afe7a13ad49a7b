/**
 * WGSL for a tiled matrix transpose `out[at + c·rows + r] (+)= in[r, c]` of a row-major
 * `rows × cols` f32 matrix: a workgroup moves one 32 × 32 tile through workgroup memory (rows
 * padded to 33 words against bank conflicts), so both the reads and the writes are coalesced.
 * Bindings: src, dst, uniform `{ rows, cols, at }`; dispatch [⌈cols/32⌉, ⌈rows/32⌉].
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";

/** Tile edge of {@link transposeKernel}. */
export const TRANSPOSE_TILE = 32;

/** The transpose kernel; with `accumulate` it adds into dst. */
export function transposeKernel(accumulate: boolean): Kernel {
  return accumulate ? TRANSPOSE_ADD : TRANSPOSE;
}

const code = (accumulate: boolean) => `
struct Params { rows: u32, cols: u32, at: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

var<workgroup> tile: array<f32, ${TRANSPOSE_TILE * (TRANSPOSE_TILE + 1)}>;

@compute @workgroup_size(${TRANSPOSE_TILE}, 8)
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) w: vec3u) {
  let c0 = w.x * ${TRANSPOSE_TILE}u;
  let r0 = w.y * ${TRANSPOSE_TILE}u;
  for (var i = 0u; i < ${TRANSPOSE_TILE}u; i += 8u) {
    let r = r0 + l.y + i;
    let c = c0 + l.x;
    if (r < P.rows && c < P.cols) { tile[(l.y + i) * ${TRANSPOSE_TILE + 1}u + l.x] = src[r * P.cols + c]; }
  }
  workgroupBarrier();
  for (var i = 0u; i < ${TRANSPOSE_TILE}u; i += 8u) {
    let c = c0 + l.y + i;
    let r = r0 + l.x;
    if (r < P.rows && c < P.cols) {
      let o = P.at + c * P.rows + r;
      dst[o] = ${accumulate ? "dst[o] + " : ""}tile[l.x * ${TRANSPOSE_TILE + 1}u + l.y + i];
    }
  }
}
`;
const TRANSPOSE: Kernel = { name: "transpose.f32", code: code(false) };
const TRANSPOSE_ADD: Kernel = { name: "transpose.f32_add", code: code(true) };
