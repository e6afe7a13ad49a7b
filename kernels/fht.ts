/**
 * WGSL for the batched fast Hartley transform `y[r, k] = s·Σ_j x[r, j]·cas(2πjk/n)`.
 *
 * Two real rows a, b travel as one complex row z = x_a + i·x_b; with Z = FFT(z) and
 * −k = (n − k) mod n, the unpack gives H_a[k] = ½[(Re Z_k + Re Z_−k) − (Im Z_k − Im Z_−k)] and
 * H_b[k] = ½[(Im Z_k + Im Z_−k) + (Re Z_k − Re Z_−k)] (H = Re X − Im X of each row's DFT X).
 * The FFTs come from the workgroup generator in ./fft_codegen.ts. Kernels:
 * - {@link fhtSharedKernel}: a row pair's whole FFT in one workgroup, unpack included; with
 *   `bluestein`, two chained length-L FFTs (chirp-z) in the same workgroup.
 * - {@link fourStepColumnsKernel}, {@link fourStepRowsKernel}: the two halves of a four-step
 *   FFT of length L = n1·n2 through global scratch (lines longer than workgroup memory).
 * - {@link bluesteinUnpackKernel}: the chirp and the unpack after a four-step Bluestein FFT.
 *
 * Every kernel takes the uniform `Params { pairs, rows, hscale, pair0, in_ld, in_off, out_off }`:
 * row pairs in this dispatch, rows of the whole batch, ½·scale, the first pair of the dispatch
 * (four-step kernels walk a batch in chunks so their scratch stays bounded), where the input rows
 * lie (`in_ld` apart from element `in_off`; packed: n and 0) and the element where the output
 * rows start (`out_off`: a band's rows in a window of a larger buffer).
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";
import { type FftStage, workgroupFftCode } from "./fft_codegen.ts";

/** Workgroup layout of one in-workgroup FFT. */
export interface FftLayout {
  /** Radices in pass order (product = the FFT length). */
  readonly radices: readonly number[];
  /** Lines per workgroup. */
  readonly lines: number;
  /** Workgroup-memory distance between lines. */
  readonly lineStride: number;
  /** Invocations per workgroup. */
  readonly threads: number;
  /** Exchange real and imaginary halves separately (half the workgroup memory). */
  readonly split: boolean;
  /** One padding word every 32 in workgroup memory (against bank conflicts). */
  readonly pad: boolean;
}

/** The generator's spec fields that come from a layout. */
function fromLayout(l: FftLayout) {
  return { lines: l.lines, lineStride: l.lineStride, threads: l.threads, split: l.split, pad: l.pad };
}

/** Storage options shared by every FHT kernel that touches the real rows. */
export interface FhtStorage {
  /** Rows stored as f16 (compute stays f32). */
  readonly f16: boolean;
}

const PARAMS =
  `struct Params { pairs: u32, rows: u32, hscale: f32, pair0: u32, in_ld: u32, in_off: u32, out_off: u32, pad1: u32 }`;

function elem(f16: boolean): string {
  return f16 ? "f16" : "f32";
}

function header(f16: boolean): string {
  return `${f16 ? "enable f16;\n" : ""}${PARAMS}\n`;
}

/** Storage bindings in order, then the uniform `P` at the next binding. */
function bindings(list: readonly [name: string, access: "read" | "read_write", type: string][]): string {
  const lines = list.map(([name, access, type], i) =>
    `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<${type}>;`
  );
  lines.push(`@group(0) @binding(${list.length}) var<uniform> P: Params;`);
  return lines.join("\n");
}

/**
 * WGSL expressions of the two real rows' Hartley outputs at k, H_a[k] and H_b[k], times `scale`,
 * from Z_k and Z_−k of their complex line held in `z0` and `z1` (the unpack of the module doc
 * without its ½, which `scale` carries).
 */
export function hartleyUnpack(scale: string): readonly [string, string] {
  return [`${scale} * ((z0.x + z1.x) - (z0.y - z1.y))`, `${scale} * ((z0.y + z1.y) + (z0.x - z1.x))`];
}

/**
 * The two unpacked Hartley outputs of rows ra and ra+1 at k from Z_k, Z_−k (times hscale); the
 * rows start at element `P.out_off`.
 */
function unpackStore(dst: string, n: number, f16: boolean): string {
  const e = elem(f16);
  const [ha, hb] = hartleyUnpack("P.hscale");
  return `  let dst_at = P.out_off + ra * ${n}u + k;
  ${dst}[dst_at] = ${e}(${ha});
  if (ra + 1u < P.rows) { ${dst}[dst_at + ${n}u] = ${e}(${hb}); }`;
}

/** Bluestein's post-multiplication: X_k = chirp_k · conj(W_k). */
function chirpPost(v: string, idx: string): string {
  return `cmul(vec2f(${v}.x, -${v}.y), chirp[${idx}])`;
}

/**
 * Load of the complex pair value at natural index `i` of row pair `ra/2` (zero past `n`); input
 * rows are `P.in_ld` apart from `P.in_off`.
 */
function pairLoad(src: string, n: number, guardN: boolean, chirp: boolean): string {
  return `  if (ra >= P.rows${guardN ? ` || i >= ${n}u` : ""}) { return vec2f(0.0); }
  let at = P.in_off + ra * P.in_ld + i;
  var z = vec2f(f32(${src}[at]), 0.0);
  if (ra + 1u < P.rows) { z.y = f32(${src}[at + P.in_ld]); }
  return ${chirp ? "cmul(z, chirp[i])" : "z"};`;
}

/** Configuration of {@link fhtSharedKernel}. */
export interface FhtSharedConfig extends FhtStorage {
  /** Hartley length. */
  readonly n: number;
  /** Complex FFT length: n, or the Bluestein length L ≥ 2n − 1. */
  readonly fft: number;
  /** Two chained length-L FFTs with chirp tables (Bluestein) instead of one of length n. */
  readonly bluestein: boolean;
  /** src and dst are the same buffer (bound once, read_write). */
  readonly inPlace: boolean;
  readonly layout: FftLayout;
}

/**
 * Row FHT with each row pair's FFT in one workgroup. Bindings: [src,] dst, tw (w_fft table;
 * only when `usesTwiddles`: a single-pass FFT needs none), and for Bluestein chirp (exp(−πi·(j² mod 2n)/n), j < n) and bc (conj(FFT_L(b))/L).
 */
export function fhtSharedKernel(c: FhtSharedConfig): Kernel & { usesTwiddles: boolean } {
  const { n, fft: L, layout: lay, f16 } = c;
  const src = c.inPlace ? "dst" : "src";
  const stage: FftStage = { radices: lay.radices, twStride: 1 };
  const fft = workgroupFftCode({
    n: L,
    ...fromLayout(lay),
    stages: c.bluestein ? [stage, stage] : [stage],
    loadLineFastest: false,
    storeCount: n,
    storeLineFastest: false,
    taps: [(l, k) => [l, k], (l, k) => [l, `(${n}u - ${k}) % ${n}u`]],
  });
  const list: [string, "read" | "read_write", string][] = [];
  if (!c.inPlace) list.push(["src", "read", elem(f16)]);
  list.push(["dst", "read_write", elem(f16)]);
  if (fft.usesTwiddles) list.push(["tw", "read", "vec2f"]);
  if (c.bluestein) list.push(["chirp", "read", "vec2f"], ["bc", "read", "vec2f"]);
  const code = `${header(f16)}${bindings(list)}

fn fft_load(wg: u32, line: u32, i: u32) -> vec2f {
  let ra = 2u * (wg * ${lay.lines}u + line);
${pairLoad(src, n, c.bluestein, c.bluestein)}
}
${
    c.bluestein
      ? `
fn fft_map(wg: u32, line: u32, i: u32, v: vec2f) -> vec2f {
  return cmul(vec2f(v.x, -v.y), bc[i]);
}
`
      : ""
  }
fn fft_store(wg: u32, line: u32, k: u32, a: vec2f, b: vec2f) {
  let ra = 2u * (wg * ${lay.lines}u + line);
  if (ra >= P.rows) { return; }
  let z0 = ${c.bluestein ? chirpPost("a", "k") : "a"};
  let z1 = ${c.bluestein ? chirpPost("b", `(${n}u - k) % ${n}u`) : "b"};
${unpackStore("dst", n, f16)}
}

${fft.code}`;
  const tag = `${c.bluestein ? "bluestein" : "shared"}_n${n}${f16 ? "_f16" : ""}${
    c.inPlace ? "_inplace" : ""
  }`;
  return { name: `fht.${tag}`, code, usesTwiddles: fft.usesTwiddles };
}

/** Configuration of the four-step kernels: an FFT of length fft = n1·n2 for Hartley length n. */
export interface FourStepConfig extends FhtStorage {
  /** Hartley length. */
  readonly n: number;
  /** FFT length (n, or the Bluestein length). */
  readonly fft: number;
  readonly n1: number;
  readonly n2: number;
  readonly layout: FftLayout;
}

/**
 * Four-step first half: for each column j2 < n2, the length-n1 FFT over j1 of
 * in[j1·n2 + j2], times w_fft^{j2·k1}, to s1[k1·n2 + j2]. A workgroup takes `lines`
 * adjacent columns of one row pair (coalesced). Source:
 * - `real`: the real rows (bindings src, s1, tw), `chirp` also multiplies by the chirp
 *   (bindings src, s1, tw, chirp);
 * - `mapped`: Bluestein's second FFT, input conj(s2[i])·bc[i] (bindings s2, s1, tw, bc).
 */
export function fourStepColumnsKernel(c: FourStepConfig, source: "real" | "chirp" | "mapped"): Kernel {
  const { n, fft: L, n1, n2, layout: lay, f16 } = c;
  const C = lay.lines, G = Math.ceil(n2 / C);
  const list: [string, "read" | "read_write", string][] = source === "mapped"
    ? [["s2", "read", "vec2f"], ["s1", "read_write", "vec2f"], ["tw", "read", "vec2f"], [
      "bc",
      "read",
      "vec2f",
    ]]
    : [["src", "read", elem(f16)], ["s1", "read_write", "vec2f"], ["tw", "read", "vec2f"]];
  if (source === "chirp") list.push(["chirp", "read", "vec2f"]);
  const load = source === "mapped"
    ? `  let v = s2[p * ${L}u + i];\n  return cmul(vec2f(v.x, -v.y), bc[i]);`
    : `  let ra = 2u * (P.pair0 + p);\n${pairLoad("src", n, source === "chirp", source === "chirp")}`;
  const { code: body } = workgroupFftCode({
    n: n1,
    ...fromLayout(lay),
    stages: [{ radices: lay.radices, twStride: n2 }],
    loadLineFastest: true,
    storeCount: n1,
    storeLineFastest: true,
    taps: [(l, k) => [l, k]],
  });
  const code = `${header(source !== "mapped" && f16)}${bindings(list)}

fn fft_load(wg: u32, line: u32, pos: u32) -> vec2f {
  let p = wg / ${G}u;
  let j2 = (wg % ${G}u) * ${C}u + line;
  if (p >= P.pairs || j2 >= ${n2}u) { return vec2f(0.0); }
  let i = pos * ${n2}u + j2;
${load}
}

fn fft_store(wg: u32, line: u32, k1: u32, a: vec2f) {
  let p = wg / ${G}u;
  let j2 = (wg % ${G}u) * ${C}u + line;
  if (p >= P.pairs || j2 >= ${n2}u) { return; }
  s1[p * ${L}u + k1 * ${n2}u + j2] = cmul(a, tw[j2 * k1]);
}

${body}`;
  return { name: `fht.fourstep_cols_${source}_n${n}_L${L}${f16 && source !== "mapped" ? "_f16" : ""}`, code };
}

/**
 * Four-step second half: for each k1 < n1, the length-n2 FFT of s1[k1·n2 + ·], whose output
 * k2 is Z[k1 + n1·k2]. A workgroup takes `lines` values of k1 of one row pair.
 * - `scatter` (Bluestein): adjacent k1, written to s2[k1 + n1·k2] (natural order). Bindings:
 *   s1, s2, tw.
 * - `unpack` (plain four-step): half the lines take adjacent k1 ≤ n1/2, the other half their
 *   mirrors (n1 − k1) mod n1, so Z[−k] of every output lies in the same workgroup
 *   (−(k1 + n1·k2) = (n1 − k1) + n1·(n2 − 1 − k2), or n1·(n2 − k2) for k1 = 0) and the
 *   Hartley rows are written directly (a mirror pair of k1 = 0 or n1/2 is computed twice and
 *   writes the same values). Bindings: s1, dst, tw.
 */
export function fourStepRowsKernel(c: FourStepConfig, mode: "scatter" | "unpack"): Kernel {
  const { n, fft: L, n1, n2, layout: lay, f16 } = c;
  const C = lay.lines;
  const unpack = mode === "unpack";
  if (unpack && (C % 2 !== 0 || L !== n)) {
    throw new Error("fourStepRowsKernel: unpack needs even lines and L = n");
  }
  const H = C / 2, G = fourStepRowGroups(c, mode);
  const { code: body } = workgroupFftCode({
    n: n2,
    ...fromLayout(lay),
    stages: [{ radices: lay.radices, twStride: n1 }],
    loadLineFastest: false,
    storeCount: n2,
    storeLineFastest: true,
    taps: unpack
      ? [(l, k) => [l, k], (l, k) => [`(${l} + ${H}u) % ${C}u`, `mirror_k2(wg, ${l}, ${k})`]]
      : [(l, k) => [l, k]],
  });
  const list: [string, "read" | "read_write", string][] = [
    ["s1", "read", "vec2f"],
    unpack ? ["dst", "read_write", elem(f16)] : ["s2", "read_write", "vec2f"],
    ["tw", "read", "vec2f"],
  ];
  const lineK1 = unpack
    ? `// k1 of a local line (n1 when unused): lines < ${H} adjacent k1 ≤ n1/2, the rest their mirrors.
fn line_k1(wg: u32, line: u32) -> u32 {
  let i = (wg % ${G}u) * ${H}u + line % ${H}u;
  if (i > ${Math.floor(n1 / 2)}u) { return ${n1}u; }
  if (line < ${H}u) { return i; }
  return (${n1}u - i) % ${n1}u;
}

// Position of Z[−k] in the mirror line, for output k2 of the line.
fn mirror_k2(wg: u32, line: u32, k2: u32) -> u32 {
  if (line_k1(wg, line) == 0u) { return (${n2}u - k2) % ${n2}u; }
  return ${n2 - 1}u - k2;
}`
    : `fn line_k1(wg: u32, line: u32) -> u32 {
  return (wg % ${G}u) * ${C}u + line;
}`;
  const store = unpack
    ? `fn fft_store(wg: u32, line: u32, k2: u32, z0: vec2f, z1: vec2f) {
  let p = wg / ${G}u;
  let k1 = line_k1(wg, line);
  if (p >= P.pairs || k1 >= ${n1}u) { return; }
  let ra = 2u * (P.pair0 + p);
  let k = k1 + ${n1}u * k2;
${unpackStore("dst", n, f16)}
}`
    : `fn fft_store(wg: u32, line: u32, k2: u32, a: vec2f) {
  let p = wg / ${G}u;
  let k1 = line_k1(wg, line);
  if (p >= P.pairs || k1 >= ${n1}u) { return; }
  s2[p * ${L}u + k1 + ${n1}u * k2] = a;
}`;
  const code = `${header(unpack && f16)}${bindings(list)}

${lineK1}

fn fft_load(wg: u32, line: u32, pos: u32) -> vec2f {
  let p = wg / ${G}u;
  let k1 = line_k1(wg, line);
  if (p >= P.pairs || k1 >= ${n1}u) { return vec2f(0.0); }
  return s1[p * ${L}u + k1 * ${n2}u + pos];
}

${store}

${body}`;
  return { name: `fht.fourstep_rows_${mode}_L${L}_${n1}x${n2}${unpack && f16 ? "_f16" : ""}`, code };
}

/** Workgroups per row pair of {@link fourStepRowsKernel}. */
export function fourStepRowGroups(c: FourStepConfig, mode: "scatter" | "unpack"): number {
  const C = c.layout.lines;
  return mode === "unpack" ? Math.ceil((Math.floor(c.n1 / 2) + 1) / (C / 2)) : Math.ceil(c.n1 / C);
}

/** Invocations per workgroup of {@link bluesteinUnpackKernel}. */
export const UNPACK_THREADS = 256;

/**
 * The end of a four-step Bluestein FHT: Z_k = chirp_k·conj(W_k) for the first n values of the
 * complex rows s2 (length `fft` each), then the Hartley unpack into the real rows of dst.
 * Bindings: s2, dst, chirp. One invocation per (pair, k).
 */
export function bluesteinUnpackKernel(n: number, fft: number, f16: boolean): Kernel {
  const list: [string, "read" | "read_write", string][] = [
    ["s2", "read", "vec2f"],
    ["dst", "read_write", elem(f16)],
    ["chirp", "read", "vec2f"],
  ];
  const code = `${header(f16)}${bindings(list)}

fn cmul(a: vec2f, b: vec2f) -> vec2f {
  return vec2f(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

@compute @workgroup_size(${UNPACK_THREADS})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let idx = (wid.x + wid.y * nwg.x) * ${UNPACK_THREADS}u + lid;
  let p = idx / ${n}u;
  let k = idx % ${n}u;
  if (p >= P.pairs) { return; }
  let km = (${n}u - k) % ${n}u;
  let a = s2[p * ${fft}u + k];
  let b = s2[p * ${fft}u + km];
  let z0 = ${chirpPost("a", "k")};
  let z1 = ${chirpPost("b", "km")};
  let ra = 2u * (P.pair0 + p);
${unpackStore("dst", n, f16)}
}
`;
  return { name: `fht.bluestein_unpack_n${n}_L${fft}${f16 ? "_f16" : ""}`, code };
}
