/**
 * Rotary position embeddings in the Hugging Face "rotate_half" convention: with
 * h = rotaryDim/2, `y[j] = x[j]·cos − x[j+h]·sin` for j < h and `y[j] = x[j]·cos + x[j−h]·sin`
 * for h ≤ j < rotaryDim; dimensions past rotaryDim pass through. The tables hold h values per
 * position. `sign = −1` applies the inverse rotation (the gradient).
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { BUILTINS, linearId } from "./indexing.ts";

/**
 * Bindings x, cos, sin, y; uniform `{ n, d, rd, t, posDiv, sign }`: element i is dimension
 * `i % d` of row `i / d`, at position `(row / posDiv) % t`.
 */
export const ropeKernel: Kernel = {
  name: "rope.apply",
  code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cosT: array<f32>;
@group(0) @binding(2) var<storage, read> sinT: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
struct P { n: u32, d: u32, rd: u32, t: u32, posDiv: u32, sign: f32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  let j = i % p.d;
  if (j >= p.rd) { y[i] = x[i]; return; }
  let half = p.rd / 2u;
  let pos = (i / p.d / p.posDiv) % p.t;
  let jj = j % half;
  let c = cosT[pos * half + jj];
  let s = sinT[pos * half + jj] * p.sign;
  if (j < half) { y[i] = x[i] * c - x[i + half] * s; } else { y[i] = x[i] * c + x[i - half] * s; }
}`,
};
