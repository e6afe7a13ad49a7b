/**
 * Deterministic sum reductions. The input is seen as a set of kept dimensions (one output
 * each) and reduced dimensions (summed), both collapsed. Each invocation sums one
 * interleaved chunk (`r = c, c + chunks, ...`) of one output, in a fixed order; a second
 * pass sums the chunks. No atomics, so results are bitwise reproducible.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { BUILTINS, GROUP_ID, linearId, stridedOffsets } from "./indexing.ts";

const cache = new Map<string, Kernel>();

/**
 * Partial sums `y[yBase + c * nOut + o] = scale · Σ_{r ≡ c (mod chunks)} x[base + koff(o) + roff(r)]`
 * (`yBase`: where a band of the output starts in its binding, lib/gpu/bands.ts).
 * `keptRank`/`redRank`: ranks of the collapsed kept and reduced iterations; `chunkFastest`:
 * adjacent invocations take adjacent chunks (best when the reduced dim is contiguous). With one
 * term (nRed = 1) and kept strides of 0, it repeats x (times the scale): a reduction's gradient.
 * Uniform `{ nOut, nRed, chunks, scale, base, yBase, d0.., k0.. (kept sizes, strides), d.., r.. }`.
 */
export function reduceKernel(keptRank: number, redRank: number, chunkFastest: boolean): Kernel {
  const key = `${keptRank}:${redRank}:${chunkFastest}`;
  let k = cache.get(key);
  if (k) return k;
  const fields = ["nOut: u32", "nRed: u32", "chunks: u32", "scale: f32", "base: u32", "yBase: u32"];
  for (let i = 0; i < keptRank; i++) fields.push(`kd${i}: u32`);
  for (let i = 0; i < keptRank; i++) fields.push(`kk${i}: u32`);
  for (let i = 0; i < redRank; i++) fields.push(`rd${i}: u32`);
  for (let i = 0; i < redRank; i++) fields.push(`rr${i}: u32`);
  const kept = stridedOffsets("o", keptRank, ["kk"], "kd");
  const red = stridedOffsets("r", redRank, ["rr"], "rd");
  const [o, c] = chunkFastest ? ["t / p.chunks", "t % p.chunks"] : ["t % p.nOut", "t / p.nOut"];
  k = {
    name: "reduce.sum",
    code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct P { ${fields.join(", ")} }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId("t")}
  if (t >= p.nOut * p.chunks) { return; }
  let o = ${o};
  let c = ${c};
  ${kept}
  var acc = 0.0;
  for (var r = c; r < p.nRed; r = r + p.chunks) {
    ${red}
    acc = acc + x[p.base + o_kk + o_rr];
  }
  y[p.yBase + c * p.nOut + o] = acc * p.scale;
}`,
  };
  cache.set(key, k);
  return k;
}

/** Invocations per row of {@link argmaxKernel}. */
export const ARGMAX_WG = 256;

/**
 * `y[first + r] = the first j of the largest x[base + r·n + j]` (finite values) for the rows r
 * of a band (lib/gpu/bands.ts), one workgroup per row: each invocation scans a strided part of
 * the row, then a tree over workgroup memory keeps the larger value, the smaller index on ties.
 * Bindings x (f32), y (i32); uniform `{ rows, n, first, base }`.
 */
export const argmaxKernel: Kernel = {
  name: "reduce.argmax",
  code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<i32>;
struct P { rows: u32, n: u32, first: u32, base: u32 }
@group(0) @binding(2) var<uniform> p: P;
var<workgroup> bestV: array<f32, ${ARGMAX_WG}>;
var<workgroup> bestI: array<u32, ${ARGMAX_WG}>;
const NONE = 0xffffffffu;
@compute @workgroup_size(${ARGMAX_WG}) fn main(${BUILTINS}) {
  let row = ${GROUP_ID};
  if (row >= p.rows) { return; }
  let base = p.base + row * p.n;
  var v = -3.4e38;
  var i = NONE;
  for (var j = lid; j < p.n; j = j + ${ARGMAX_WG}u) {
    let xj = x[base + j];
    if (i == NONE || xj > v) { v = xj; i = j; }
  }
  bestV[lid] = v;
  bestI[lid] = i;
  workgroupBarrier();
  for (var s = ${ARGMAX_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let ov = bestV[lid + s];
      let oi = bestI[lid + s];
      let mine = bestI[lid];
      if (oi != NONE && (mine == NONE || ov > bestV[lid] || (ov == bestV[lid] && oi < mine))) {
        bestV[lid] = ov;
        bestI[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { y[p.first + row] = i32(bestI[0]); }
}`,
};
