/**
 * WGSL for ΔW = s·C_M S̃ C_N in one kernel: the rows of (S̃·C_N)ᵀ are made on the fly from S̃'s
 * rows and a cas table as a workgroup FFT loads them (two rows j, j+1 as one complex line of
 * length M, kernels/fht.ts's pairing), transformed along M in workgroup memory, and the Hartley
 * unpack stores ΔWᵀ's rows j, j+1 as ΔW's columns (or as ΔWᵀ's rows): overwriting, adding, or
 * adding to a base weight stored elsewhere (W + ΔW written into a copy without copying W first).
 * Replaces kernels/sparse.ts's `casRowsKernel`, a row FHT and a transpose. A band of ΔWᵀ's rows
 * is one dispatch of its own (ΔW over one storage binding); {@link casBandKernel} makes a band's
 * rows of (S̃·C_N)ᵀ for the three passes where M's transform does not fit a workgroup.
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
  /** N ≥ 65536: cas indices j·col mod N computed without overflowing u32 ({@link casIndexCode}). */
  readonly wide: boolean;
}

/**
 * WGSL `fn cas_index(j: u32, col: u32, n: u32) -> u32`, (j·col) mod n for j, col < n: the product
 * itself where `wide` is false (n < 65536), else by bytes of j, most significant first, which
 * stays below 2³² for n < 2²⁴.
 */
function casIndexCode(wide: boolean): string {
  if (!wide) return `fn cas_index(j: u32, col: u32, n: u32) -> u32 { return (j * col) % n; }`;
  const step = (shift: number) => `  r = ((r << 8u) % n + ((j >> ${shift}u) & 255u) * col % n) % n;`;
  return `fn cas_index(j: u32, col: u32, n: u32) -> u32 {
  var r = 0u;
${[16, 8, 0].map(step).join("\n")}
  return r;
}`;
}

/**
 * Bindings: plan (u32: S̃'s CSR by rows at `ptr`, entries (col, coefficient, w) at `ent`), c
 * (coefficients), cas (f32, N: cas(2πt/N)), dst, [base], [tw], then the uniform
 * `{n, ptr, ent, at, hscale, first, end}` (N, ½·α/(M·N), and the rows [first, end) of ΔWᵀ made);
 * dst's ΔW starts at element `at`, and ΔWᵀ's band at `at` with its row `first` there. Dispatch
 * `grid(gpu, ⌈⌈(end − first)/2⌉ / lines⌉)`. Needs N < 2²⁴ (N < 65536 unless `wide`).
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
  const local = (j: string) => c.transposed ? `(${j} - P.first) * ${m}u + k` : `k * P.n + ${j}`;
  const put = (j: string, v: string) => {
    if (c.mode === "write") return `dst[P.at + ${local(j)}] = ${v};`;
    if (c.mode === "add") return `{ let o = P.at + ${local(j)}; dst[o] = dst[o] + ${v}; }`;
    return `{ let o = ${local(j)}; dst[P.at + o] = base[o] + ${v}; }`;
  };
  const [ha, hb] = hartleyUnpack("P.hscale");
  const code = `struct Params { n: u32, ptr: u32, ent: u32, at: u32, hscale: f32, first: u32, end: u32 }
${list.join("\n")}
@group(0) @binding(${list.length}) var<uniform> P: Params;

${casIndexCode(c.wide)}

// Element r of line (wg, line): (S̃·C_N)[r, j] and [r, j + 1] for j = first + 2·(wg·lines + line).
fn fft_load(wg: u32, line: u32, r: u32) -> vec2f {
  let j = P.first + 2u * (wg * ${lay.lines}u + line);
  if (j >= P.end) { return vec2f(0.0); }
  let second = j + 1u < P.end;
  var z = vec2f(0.0);
  let end = plan[P.ptr + r + 1u];
  for (var e = plan[P.ptr + r]; e < end; e++) {
    let b = P.ent + 3u * e;
    let col = plan[b];
    let w = bitcast<f32>(plan[b + 2u]) * c[plan[b + 1u]];
    z.x += w * cas[cas_index(j, col, P.n)];
    if (second) { z.y += w * cas[cas_index(j + 1u, col, P.n)]; }
  }
  return z;
}

fn fft_store(wg: u32, line: u32, k: u32, z0: vec2f, z1: vec2f) {
  let j = P.first + 2u * (wg * ${lay.lines}u + line);
  if (j >= P.end) { return; }
  ${put("j", ha)}
  if (j + 1u < P.end) { ${put("(j + 1u)", hb)} }
}

${fft.code}`;
  const tag = `m${m}_l${lay.lines}_t${lay.threads}${lay.split ? "_split" : ""}${lay.pad ? "_pad" : ""}${
    c.transposed ? "_t" : ""
  }_${c.mode}${c.wide ? "_wide" : ""}`;
  return { name: `delta_weight.${tag}`, code, usesTwiddles: fft.usesTwiddles };
}

/** Invocations per workgroup of {@link casBandKernel}. */
export const CAS_BAND_THREADS = 256;

/**
 * `out[(j − first)·rows + r] = Σ_{e ∈ row r} w_e · c[k_e] · cas[(j·col_e) mod n]` for j in
 * [first, first + count), r < rows: a band of (S̃·C_n)ᵀ's rows from S̃'s rows, one invocation per
 * output element. Bindings: plan (S̃'s CSR by rows at `ptr`, entries at `ent`), c, cas (f32, n),
 * out, the uniform `{rows, n, ptr, ent, first, count}`. Needs n < 2²⁴ (n < 65536 unless `wide`).
 */
export function casBandKernel(wide: boolean): Kernel {
  return {
    name: `delta_weight.cas_band${wide ? "_wide" : ""}`,
    code: `
@group(0) @binding(0) var<storage, read> plan: array<u32>;
@group(0) @binding(1) var<storage, read> c: array<f32>;
@group(0) @binding(2) var<storage, read> cas: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
struct P { rows: u32, n: u32, ptr: u32, ent: u32, first: u32, count: u32 }
@group(0) @binding(4) var<uniform> p: P;

${casIndexCode(wide)}

@compute @workgroup_size(${CAS_BAND_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * ${CAS_BAND_THREADS}u;
  if (id >= p.rows * p.count) { return; }
  let j = p.first + id / p.rows;
  let r = id % p.rows;
  var acc = 0.0;
  let end = plan[p.ptr + r + 1u];
  for (var e = plan[p.ptr + r]; e < end; e++) {
    let b = p.ent + 3u * e;
    acc += bitcast<f32>(plan[b + 2u]) * c[plan[b + 1u]] * cas[cas_index(j, plan[b], p.n)];
  }
  out[id] = acc;
}`,
  };
}
