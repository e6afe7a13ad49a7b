/**
 * WGSL for the coefficient gradient of a square spectral adapter (M = N = n) fused with the
 * transforms of its inputs: for each entry e = (u, v) of S̃ and each workgroup's span of token
 * pairs, `partial[g·E + e] = Σ_t δ̂[t, u]·x̂[t, v]` with δ̂ = FHT(δ) and x̂ = FHT(x) made in
 * workgroup memory and never stored. A trip of the workgroup's loop takes P row pairs: it
 * transforms 2P complex lines (line p < P: δ's rows of pair p as one complex line, kernels/fht.ts's
 * pairing; line P + p: x's), unpacks them into 4P Hartley rows (`hart`: δ̂'s 2P rows, then
 * x̂'s), and each invocation adds the products into the named accumulators of its entries
 * e = lid + j·threads. One dispatch replaces FHT(x), FHT(δ) and the first gradient pass; the
 * second pass (kernels/sparse.ts's `gradReduceKernel`) sums the partials.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";
import { workgroupFftCode } from "./fft_codegen.ts";
import { type FftLayout, hartleyUnpack } from "./fht.ts";

/** Configuration of {@link fusedGradKernel}. */
export interface FusedGradConfig {
  /** n = M = N. */
  readonly n: number;
  /** FFT layout with 2P lines (P row pairs of δ, then of x); its `threads` are the workgroup's. */
  readonly layout: FftLayout;
  /** Entries per invocation (named accumulators). */
  readonly perThread: number;
}

/**
 * The fused first pass. Bindings: plan (u32, the entry list at `list`), dy (rows `dy_ld` apart
 * from `dy_off`), x (packed rows from `x_off`), partial, [tw], then the uniform
 * `{tokens, trips, per, chunks, list, entries, dy_ld, dy_off, x_off}`: workgroup g takes trips
 * [g·per, (g+1)·per) of the ⌈tokens/2P⌉, for g < chunks. Dispatch `grid(gpu, chunks)`.
 */
export function fusedGradKernel(c: FusedGradConfig): Kernel & { usesTwiddles: boolean } {
  const { n, layout: lay, perThread: J } = c;
  if (lay.lines % 2) throw new Error(`fused coefficient gradient: the layout needs an even line count`);
  const T = lay.threads, pairs = lay.lines / 2;
  const fft = workgroupFftCode({
    n,
    lines: lay.lines,
    lineStride: lay.lineStride,
    threads: T,
    split: lay.split,
    pad: lay.pad,
    stages: [{ radices: lay.radices, twStride: 1 }],
    loadLineFastest: false,
    storeCount: n,
    storeLineFastest: false,
    taps: [(l, k) => [l, k], (l, k) => [l, `(${n}u - ${k}) % ${n}u`]],
    entry: "function",
  });
  const js = Array.from({ length: J }, (_, j) => j);
  const bindings = ["plan: array<u32>", "dy: array<f32>", "x: array<f32>"]
    .map((b, i) => `@group(0) @binding(${i}) var<storage, read> ${b};`);
  bindings.push(`@group(0) @binding(3) var<storage, read_write> partial: array<f32>;`);
  if (fft.usesTwiddles) bindings.push(`@group(0) @binding(4) var<storage, read> tw: array<vec2f>;`);
  const uniform = fft.usesTwiddles ? 5 : 4;
  const [ha, hb] = hartleyUnpack("0.5");
  const code = `struct Params {
  tokens: u32, trips: u32, per: u32, chunks: u32,
  list: u32, entries: u32, dy_ld: u32, dy_off: u32,
  x_off: u32,
}
${bindings.join("\n")}
@group(0) @binding(${uniform}) var<uniform> P: Params;
// Hartley rows of the trip's pairs: δ̂'s 2P rows, then x̂'s
var<workgroup> hart: array<f32, ${4 * pairs * n}>;

// Trip q, line p < P: δ's rows of pair q·P + p as one complex line; line P + p: x's (zero past
// the tokens).
fn fft_load(q: u32, line: u32, i: u32) -> vec2f {
  let ra = 2u * (q * ${pairs}u + line % ${pairs}u);
  if (ra >= P.tokens) { return vec2f(0.0); }
  let second = ra + 1u < P.tokens;
  if (line < ${pairs}u) {
    let at = P.dy_off + ra * P.dy_ld + i;
    var z = vec2f(dy[at], 0.0);
    if (second) { z.y = dy[at + P.dy_ld]; }
    return z;
  }
  let at = P.x_off + ra * ${n}u + i;
  var z = vec2f(x[at], 0.0);
  if (second) { z.y = x[at + ${n}u]; }
  return z;
}

// Line l's two Hartley rows are rows 2l and 2l + 1 of hart.
fn fft_store(q: u32, line: u32, k: u32, z0: vec2f, z1: vec2f) {
  hart[line * ${2 * n}u + k] = ${ha};
  hart[line * ${2 * n}u + ${n}u + k] = ${hb};
}

${fft.code}
@compute @workgroup_size(${T})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= P.chunks) { return; }
${
    js.map((j) =>
      `  let e${j} = lid + ${j * T}u; let in${j} = e${j} < P.entries;
  var u${j} = 0u; var v${j} = ${2 * pairs * n}u; var acc${j} = 0.0;
  if (in${j}) { u${j} = plan[P.list + 2u * e${j}]; v${j} += plan[P.list + 2u * e${j} + 1u]; }`
    ).join("\n")
  }
  let end = min(g * P.per + P.per, P.trips);
  for (var q = g * P.per; q < end; q++) {
    fft_run(q, lid);
    workgroupBarrier();
    for (var r = 0u; r < ${2 * pairs * n}u; r += ${n}u) {
${js.map((j) => `      acc${j} += hart[r + u${j}] * hart[r + v${j}];`).join("\n")}
    }
    workgroupBarrier();
  }
${js.map((j) => `  if (in${j}) { partial[g * P.entries + e${j}] = acc${j}; }`).join("\n")}
}
`;
  const tag = `n${n}_p${pairs}_t${T}_j${J}${lay.split ? "_split" : ""}${lay.pad ? "_pad" : ""}`;
  return { name: `coef_grad.fused_${tag}`, code, usesTwiddles: fft.usesTwiddles };
}
