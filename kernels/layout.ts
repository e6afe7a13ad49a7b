/**
 * Strided copies: one kernel serves permute, slice, slice-backward, concat, broadcast-to
 * and dtype casts, or adds into dst. Element `i` of the (collapsed) iteration reads
 * `src[soff + Σ c·s]` and writes (or adds to) `dst[doff + Σ c·t]`.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { BUILTINS, linearId, stridedFields, stridedOffsets } from "./indexing.ts";

/**
 * Element storage types of copies: raw 32-bit words (f32, i32), four of them at once (a copy
 * whose rows are contiguous on both sides, in units of 16 bytes), f32 values, f16 values.
 */
export type CopyType = "u32" | "vec4<u32>" | "f32" | "f16";

const cache = new Map<string, Kernel>();

/**
 * A strided copy of rank `rank` from `array<src>` to `array<dst>` (converting when the types
 * differ; f16 needs `enable f16`), or with `accumulate` an add into dst (f32 to f32). Uniform
 * `{ n, soff, doff, d0.., s0.., t0.. }`.
 */
export function copyKernel(rank: number, src: CopyType, dst: CopyType, accumulate = false): Kernel {
  if (accumulate && (src !== "f32" || dst !== "f32")) throw new Error("copyKernel: only f32 adds into dst");
  const key = `${rank}:${src}:${dst}:${accumulate}`;
  let k = cache.get(key);
  if (k) return k;
  const value = src === dst ? "v" : `${dst}(v)`;
  k = {
    name: `layout.${accumulate ? "add" : "copy"}_${src.replace("vec4<u32>", "u32x4")}_${
      dst.replace("vec4<u32>", "u32x4")
    }`,
    code: `${src === "f16" || dst === "f16" ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> x: array<${src}>;
@group(0) @binding(1) var<storage, read_write> y: array<${dst}>;
struct P { n: u32, soff: u32, doff: u32, ${stridedFields(rank, ["s", "t"])} }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  ${stridedOffsets("i", rank, ["s", "t"])}
  let v = x[p.soff + o_s];
  y[p.doff + o_t] = ${accumulate ? "y[p.doff + o_t] + " : ""}${value};
}`,
  };
  cache.set(key, k);
  return k;
}

/**
 * Slice's gradient in one pass: y [outer, n, inner] (32-bit words, from element `yoff`) holds
 * x [outer, width, inner] (from element `xoff`) at rows [lo, lo + width) of its middle axis and
 * zeros elsewhere. Uniform `{ count, n, inner, lo, width, xoff, yoff }`.
 */
export const padKernel: Kernel = {
  name: "layout.pad",
  code: `@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
struct P { count: u32, n: u32, inner: u32, lo: u32, width: u32, xoff: u32, yoff: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.count) { return; }
  let r = i % p.inner;
  let j = (i / p.inner) % p.n;
  let o = i / (p.inner * p.n);
  var v = 0u;
  if (j >= p.lo && j < p.lo + p.width) { v = x[p.xoff + (o * p.width + j - p.lo) * p.inner + r]; }
  y[p.yoff + i] = v;
}`,
};
