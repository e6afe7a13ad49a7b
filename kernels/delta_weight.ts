/**
 * WGSL for ΔW = s·C_M S̃ C_N in one kernel: the rows of (S̃·C_N)ᵀ are made on the fly from S̃'s
 * rows and a cas table as a workgroup FFT loads them (two rows j, j+1 as one complex line of
 * length M, kernels/fht.ts's pairing), transformed along M in workgroup memory, and the Hartley
 * unpack stores ΔWᵀ's rows j, j+1 as ΔW's columns (or as ΔWᵀ's rows): overwriting, adding, or
 * adding to a base weight stored elsewhere (W + ΔW written into a copy without copying W first).
 * Replaces kernels/sparse.ts's `casRowsKernel`, a row FHT and a transpose.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";
import { workgroupFftCode } from "./fft_codegen.ts";
import { type FftLayout, hartleyUnpack } from "./fht.ts";

/** Configuration of {@link deltaWeightKernel}. */
export interface DeltaWeightConfig {
  /** M = out_features: the transform length. */
  readonly m: number;
  /** FFT layout: each line is a pair of ΔWᵀ's rows. */
  readonly layout: FftLayout;
  /** Store ΔWᵀ (N×M) instead of ΔW (M×N). */
  readonly transposed: boolean;
  /** dst = ΔW, dst += ΔW, or dst = base + ΔW (base: the same layout from its element 0). */
  readonly mode: "write" | "add" | "base";
}

/**
 * Bindings: plan (u32: S̃'s CSR by rows at `ptr`, entries (col, coefficient, w) at `ent`), c
 * (coefficients), cas (f32, N: cas(2πt/N)), dst, [base], [tw], then the uniform
 * `{n, ptr, ent, at, hscale}` (N, and ½·α/(M·N)); dst's ΔW starts at element `at`. Dispatch
 * `grid(gpu, ⌈⌈N/2⌉ / lines⌉)`. Needs N < 65536 (j·col < 2³²).
 */
export function deltaWeightKernel(c: DeltaWeightConfig): Kernel & { usesTwiddles: boolean } {
  const { m, layout: lay } = c;
  const fft = workgroupFftCode({
    n: m,
    lines: lay.lines,
    lineStride: lay.lineStride,
    threads: lay.threads,
    split: lay.split,
    pad: lay.pad,
    stages: [{ radices: lay.radices, twStride: 1 }],
    loadLineFastest: false,
    storeCount: m,
    // ΔW's columns j, j+1 of neighbouring lines lie side by side: walk lines fastest there
    storeLineFastest: !c.transposed,
    taps: [(l, k) => [l, k], (l, k) => [l, `(${m}u - ${k}) % ${m}u`]],
  });
  const list = ["plan: array<u32>", "c: array<f32>", "cas: array<f32>"]
    .map((b, i) => `@group(0) @binding(${i}) var<storage, read> ${b};`);
  list.push(`@group(0) @binding(3) var<storage, read_write> dst: array<f32>;`);
  if (c.mode === "base") list.push(`@group(0) @binding(4) var<storage, read> base: array<f32>;`);
  if (fft.usesTwiddles) list.push(`@group(0) @binding(${list.length}) var<storage, read> tw: array<vec2f>;`);
  const local = (j: string) => c.transposed ? `${j} * ${m}u + k` : `k * P.n + ${j}`;
  const put = (j: string, v: string) => {
    if (c.mode === "write") return `dst[P.at + ${local(j)}] = ${v};`;
    if (c.mode === "add") return `{ let o = P.at + ${local(j)}; dst[o] = dst[o] + ${v}; }`;
    return `{ let o = ${local(j)}; dst[P.at + o] = base[o] + ${v}; }`;
  };
  const [ha, hb] = hartleyUnpack("P.hscale");
  const code = `struct Params { n: u32, ptr: u32, ent: u32, at: u32, hscale: f32 }
${list.join("\n")}
@group(0) @binding(${list.length}) var<uniform> P: Params;

// Element r of line (wg, line): (S̃·C_N)[r, j] and [r, j + 1] for j = 2·(wg·lines + line).
fn fft_load(wg: u32, line: u32, r: u32) -> vec2f {
  let j = 2u * (wg * ${lay.lines}u + line);
  if (j >= P.n) { return vec2f(0.0); }
  let second = j + 1u < P.n;
  var z = vec2f(0.0);
  let end = plan[P.ptr + r + 1u];
  for (var e = plan[P.ptr + r]; e < end; e++) {
    let b = P.ent + 3u * e;
    let col = plan[b];
    let w = bitcast<f32>(plan[b + 2u]) * c[plan[b + 1u]];
    z.x += w * cas[(j * col) % P.n];
    if (second) { z.y += w * cas[((j + 1u) * col) % P.n]; }
  }
  return z;
}

fn fft_store(wg: u32, line: u32, k: u32, z0: vec2f, z1: vec2f) {
  let j = 2u * (wg * ${lay.lines}u + line);
  if (j >= P.n) { return; }
  ${put("j", ha)}
  if (j + 1u < P.n) { ${put("(j + 1u)", hb)} }
}

${fft.code}`;
  const tag = `m${m}_l${lay.lines}_t${lay.threads}${lay.split ? "_split" : ""}${lay.pad ? "_pad" : ""}${
    c.transposed ? "_t" : ""
  }_${c.mode}`;
  return { name: `delta_weight.${tag}`, code, usesTwiddles: fft.usesTwiddles };
}
