/**
 * Batched 1-D fast Hartley transform on the GPU along the last axis, for any length n ≥ 1:
 * `y[r, k] = scale · Σ_j x[r, j]·cas(2πjk/n)`, rows row-major, f32 (or f16 storage).
 *
 * Plans, chosen per (device, n) and cached with their twiddle tables:
 * - `shared`: every prime factor ≤ 64 and a complex line fits workgroup memory (8n bytes, or
 *   4n bytes exchanging real and imaginary halves in turn): one dispatch, one workgroup per
 *   group of row pairs, Hartley unpack included.
 * - `four-step`: longer lines, n = n1·n2: column FFTs (twiddled) into a global scratch, then
 *   row FFTs that pair each k1 with its mirror n1 − k1 and write the Hartley rows (two
 *   dispatches).
 * - `bluestein` (a prime factor > 64): chirp-z over a length L = c·2^k ≥ 2n − 1 (c ≤ 9 odd),
 *   in one workgroup (two chained FFTs) when L fits, else as two four-step FFTs and an unpack
 *   pass.
 * All tables are computed in float64 on the CPU.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { bindingLimit, clampedBinding, pairedRowBands, rowWindow } from "../gpu/bands.ts";
import { grid, upload } from "../gpu/buffers.ts";
import type { Kernel } from "../gpu/pipelines.ts";
import type { Binding } from "../gpu/stream.ts";
import {
  chooseRadices,
  halfWords,
  MAX_LOOP_PRIME,
  MAX_UNROLLED_PRIME,
  primeFactors,
  smallestPrime,
} from "../../kernels/fft_codegen.ts";
import {
  bluesteinUnpackKernel,
  type FftLayout,
  fhtSharedKernel,
  fourStepColumnsKernel,
  type FourStepConfig,
  fourStepRowGroups,
  fourStepRowsKernel,
  UNPACK_THREADS,
} from "../../kernels/fht.ts";

/** Options of {@link encodeFht}. */
export interface FhtOptions {
  /** Multiplies the result (default 1). */
  scale?: number;
  /** src and dst hold f16 (array<f16>); arithmetic stays f32. Needs `gpu.f16`. */
  f16?: boolean;
  /**
   * Where src's rows lie: row r starts at element `offset + r·ld` (default: packed, `ld` = n).
   * The columns of a wider matrix (one layer's part of a stacked gradient) need no copy. Not
   * with src = dst.
   */
  input?: { ld: number; offset?: number };
  /** Where dst's rows lie: packed from element `offset` (default 0). Not with src = dst. */
  output?: { offset: number };
}

/** How a length is transformed on one device (see the module doc). */
export interface FhtPlan {
  /** Transform length. */
  readonly n: number;
  /** Strategy: one workgroup per line, four-step, or Bluestein's chirp-z over either. */
  readonly kind: "shared" | "four-step" | "bluestein-shared" | "bluestein-four-step";
  /** Complex FFT length: n, or Bluestein's L. */
  readonly fft: number;
  /** One line, e.g. `shared n=4096 radices 16·16·16, 1 line × 256 threads`. */
  readonly description: string;
}

/** Elements per workgroup aimed at when short rows are batched into one workgroup. */
const WORKGROUP_ELEMENTS = 2048;
/** Lines a four-step workgroup aims at (adjacent columns: coalesced strided access). */
const FOUR_STEP_LINES = 16;
/** Upper bound on the bytes of one four-step scratch buffer (larger batches go in chunks). */
const SCRATCH_BYTES = 256 << 20;

interface SharedPlan extends FhtPlan {
  readonly kind: "shared" | "bluestein-shared";
  readonly layout: FftLayout;
}

interface FourStepPlan extends FhtPlan {
  readonly kind: "four-step" | "bluestein-four-step";
  readonly cols: FourStepConfig;
  readonly rows: FourStepConfig;
}

type AnyPlan = (SharedPlan | FourStepPlan) & {
  /** w_fft table. */
  readonly tw: GPUBuffer;
  /** Bluestein's chirp and conj(FFT(b))/L tables. */
  readonly chirp?: GPUBuffer;
  readonly bc?: GPUBuffer;
  readonly kernels: Map<string, Kernel & { usesTwiddles?: boolean }>;
};

const plans = new WeakMap<Gpu, Map<number, AnyPlan>>();

/** Word capacity of workgroup memory. */
function capacityWords(gpu: Gpu): number {
  return Math.floor(gpu.limits.maxComputeWorkgroupStorageSize / 4);
}

/**
 * Invocations for `elements` complex values per workgroup: one butterfly of the largest
 * unrolled radix each (every invocation busy in those passes; smaller radices take several
 * butterflies per invocation). Lengths with only loop-form radices take 8 values each.
 */
function threadsFor(gpu: Gpu, elements: number, radices: readonly number[]): number {
  const unrolled = radices.filter((r) => smallestPrime(r) <= MAX_UNROLLED_PRIME);
  const per = unrolled.length ? Math.max(...unrolled) : 8;
  const t = Math.max(32, Math.ceil(elements / per / 32) * 32);
  return Math.min(t, gpu.limits.maxComputeInvocationsPerWorkgroup);
}

/**
 * The layout for lines of length `len` with up to `want` lines per workgroup, or null when
 * not even one line fits workgroup memory. Preference: whole complex lines with bank padding,
 * without, then split halves with and without. `stridePad` adds one word per line (for
 * lines walked line-fastest); `evenLines` asks for an even line count; `reservePerLine` words
 * of workgroup memory per line are kept for the caller's kernel.
 */
function layoutFor(
  gpu: Gpu,
  len: number,
  want: number,
  stridePad: boolean,
  evenLines = false,
  reservePerLine = 0,
): FftLayout | null {
  const cap = capacityWords(gpu);
  for (const [split, pad] of [[false, true], [false, false], [true, true], [true, false]]) {
    for (let lines = want; lines >= 1; lines = lines > 1 ? Math.floor(lines / 2) : 0) {
      if (evenLines && lines % 2 !== 0) continue;
      const stride = stridePad && lines > 1 ? len + 1 : len;
      if (halfWords(lines, stride, pad) * (split ? 1 : 2) + lines * reservePerLine > cap) continue;
      const radices = chooseRadices(len);
      const threads = threadsFor(gpu, lines * len, radices);
      if (lines * len > 32 * threads) return null;
      return { radices, lines, lineStride: stride, threads, split, pad };
    }
  }
  return null;
}

/**
 * The divisor pair n1·n2 = L (n1 ≤ n2) closest to √L whose halves both get a layout (the
 * plain four-step's second half needs an even line count: it pairs each k1 with its mirror).
 */
function fourStepSplit(
  gpu: Gpu,
  n: number,
  L: number,
): { cols: FourStepConfig; rows: FourStepConfig } | null {
  for (let n1 = Math.floor(Math.sqrt(L)); n1 >= 2; n1--) {
    if (L % n1 !== 0) continue;
    const n2 = L / n1;
    const a = layoutFor(gpu, n1, FOUR_STEP_LINES, true);
    const b = layoutFor(gpu, n2, FOUR_STEP_LINES, true, L === n);
    if (!a || !b) return null; // n2 only grows from here
    return {
      cols: { n, fft: L, n1, n2, layout: a, f16: false },
      rows: { n, fft: L, n1, n2, layout: b, f16: false },
    };
  }
  return null;
}

function describeLayout(l: FftLayout): string {
  return `radices ${l.radices.join("·") || "none"}, ${l.lines} line${
    l.lines > 1 ? "s" : ""
  } × ${l.threads} ` +
    `threads${l.split ? ", split halves" : ""}${l.pad ? ", padded" : ""}`;
}

/** w_N^m = exp(−2πi·m/N), m < N, interleaved (re, im), computed in float64. */
function twiddleTable(N: number): Float32Array {
  const t = new Float32Array(2 * N);
  for (let m = 0; m < N; m++) {
    const a = 2 * Math.PI * m / N;
    t[2 * m] = Math.cos(a);
    t[2 * m + 1] = -Math.sin(a);
  }
  return t;
}

/** Forward DFT in float64 by recursive mixed-radix decimation in time (any length). */
function fft64(re: Float64Array, im: Float64Array): { re: Float64Array; im: Float64Array } {
  const N = re.length;
  if (N === 1) return { re, im };
  const p = smallestPrime(N), m = N / p;
  const subs = Array.from({ length: p }, (_, a) => {
    const sr = new Float64Array(m), si = new Float64Array(m);
    for (let q = 0; q < m; q++) {
      sr[q] = re[a + p * q];
      si[q] = im[a + p * q];
    }
    return fft64(sr, si);
  });
  const outRe = new Float64Array(N), outIm = new Float64Array(N);
  for (let k = 0; k < N; k++) {
    let xr = 0, xi = 0;
    for (let a = 0; a < p; a++) {
      const t = 2 * Math.PI * ((a * k) % N) / N, c = Math.cos(t), s = -Math.sin(t);
      const yr = subs[a].re[k % m], yi = subs[a].im[k % m];
      xr += yr * c - yi * s;
      xi += yr * s + yi * c;
    }
    outRe[k] = xr;
    outIm[k] = xi;
  }
  return { re: outRe, im: outIm };
}

/** Bluestein's FFT length: the least c·2^k ≥ x with c in 1, 3, 5, 7, 9 (few, large radices). */
function bluesteinLength(x: number): number {
  return Math.min(...[1, 3, 5, 7, 9].map((c) => c * 2 ** Math.max(0, Math.ceil(Math.log2(x / c)))));
}

/**
 * Bluestein tables for length n over L: chirp[j] = exp(−πi·(j² mod 2n)/n) (the index keeps
 * the angle exact) and bc = conj(FFT_L(b))/L with b the circular chirp conj.
 */
function bluesteinTables(n: number, L: number): { chirp: Float32Array; bc: Float32Array } {
  const chirp = new Float32Array(2 * n);
  const re = new Float64Array(L), im = new Float64Array(L);
  for (let j = 0; j < n; j++) {
    const a = Math.PI * ((j * j) % (2 * n)) / n;
    const c = Math.cos(a), s = Math.sin(a);
    chirp[2 * j] = c;
    chirp[2 * j + 1] = -s;
    re[j] = c;
    im[j] = s;
    if (j > 0) {
      re[L - j] = c;
      im[L - j] = s;
    }
  }
  const B = fft64(re, im);
  const bc = new Float32Array(2 * L);
  for (let m = 0; m < L; m++) {
    bc[2 * m] = B.re[m] / L;
    bc[2 * m + 1] = -B.im[m] / L;
  }
  return { chirp, bc };
}

function checkLength(n: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`FHT length must be an integer ≥ 1, got ${n}`);
  }
}

function makePlan(gpu: Gpu, n: number): AnyPlan {
  const kernels = new Map<string, Kernel>();
  const tw = (L: number) => upload(gpu, twiddleTable(L), `fht.tw${L}`);
  if (primeFactors(n).every((p) => p <= MAX_LOOP_PRIME)) {
    const layout = layoutFor(gpu, n, Math.max(1, Math.floor(WORKGROUP_ELEMENTS / n)), false);
    if (layout) {
      const description = `shared n=${n} ${describeLayout(layout)}`;
      return { n, fft: n, kind: "shared", layout, description, tw: tw(n), kernels };
    }
    const split = fourStepSplit(gpu, n, n);
    if (split) {
      const description = `four-step n=${n} ${describeSplit(split)}`;
      return { n, fft: n, kind: "four-step", ...split, description, tw: tw(n), kernels };
    }
  }
  const L = bluesteinLength(2 * n - 1);
  const layout = layoutFor(gpu, L, Math.max(1, Math.floor(WORKGROUP_ELEMENTS / L)), false);
  const split = layout ? null : fourStepSplit(gpu, n, L);
  if (!layout && !split) {
    throw new Error(
      `FHT length ${n} is too large for this device: its workgroup memory ` +
        `(${gpu.limits.maxComputeWorkgroupStorageSize} bytes) allows four-step FFT lines up to ${
          capacityWords(gpu) ** 2
        }, and this length needs ${L}`,
    );
  }
  const tables = bluesteinTables(n, L);
  const common = {
    n,
    fft: L,
    tw: tw(L),
    chirp: upload(gpu, tables.chirp, `fht.chirp${n}`),
    bc: upload(gpu, tables.bc, `fht.bc${n}`),
    kernels,
  };
  if (layout) {
    const description = `bluestein-shared n=${n} L=${L} ${describeLayout(layout)}`;
    return { ...common, kind: "bluestein-shared", layout, description };
  }
  const description = `bluestein-four-step n=${n} L=${L} ${describeSplit(split!)}`;
  return { ...common, kind: "bluestein-four-step", ...split!, description };
}

function describeSplit(s: { cols: FourStepConfig; rows: FourStepConfig }): string {
  return `${s.cols.n1}×${s.cols.n2}: columns ${describeLayout(s.cols.layout)}; rows ${
    describeLayout(s.rows.layout)
  }`;
}

function getPlan(gpu: Gpu, n: number): AnyPlan {
  checkLength(n);
  let byN = plans.get(gpu);
  if (!byN) plans.set(gpu, byN = new Map());
  let plan = byN.get(n);
  if (!plan) byN.set(n, plan = makePlan(gpu, n));
  return plan;
}

/**
 * The plan for length `n` on `gpu` (cached with its tables).
 * @throws Error when n is not an integer ≥ 1 or too large for the device.
 */
export function planFht(gpu: Gpu, n: number): FhtPlan {
  const p = getPlan(gpu, n);
  return { n: p.n, kind: p.kind, fft: p.fft, description: p.description };
}

/**
 * For a kernel that transforms up to `lines` complex lines of length `n` inside each workgroup
 * with the FFT generator (kernels/fft_codegen.ts): the layout (its `lines` may be fewer; an
 * even number with `evenLines`) and the twiddle table `tw`, keeping `reservePerLine` words of
 * workgroup memory per line for the caller; null when n has a prime factor above the
 * generator's or no line count fits.
 */
export function workgroupFhtLayout(
  gpu: Gpu,
  n: number,
  lines: number,
  opts: { reservePerLine?: number; evenLines?: boolean } = {},
): { layout: FftLayout; tw: GPUBuffer } | null {
  checkLength(n);
  if (primeFactors(n).some((p) => p > MAX_LOOP_PRIME)) return null;
  const layout = layoutFor(gpu, n, lines, false, opts.evenLines ?? false, opts.reservePerLine ?? 0);
  return layout ? { layout, tw: getPlan(gpu, n).tw } : null;
}

function kernel<K extends Kernel>(plan: AnyPlan, key: string, make: () => K): K {
  let k = plan.kernels.get(key);
  if (!k) plan.kernels.set(key, k = make());
  return k as K;
}

function params(
  pairs: number,
  rows: number,
  hscale: number,
  pair0: number,
  at: Placement,
): Uint32Array {
  const p = new Uint32Array([pairs, rows, 0, pair0, at.ld, at.inOff, at.outOff, 0]);
  new Float32Array(p.buffer)[2] = hscale;
  return p;
}

/** Where a dispatch's rows lie in its bindings: input rows `ld` apart from `inOff`, output packed from `outOff`. */
interface Placement {
  ld: number;
  inOff: number;
  outOff: number;
}

/**
 * Encode `dst = scale · FHT(src)` along the last axis of `rows × n` values into `gpu.stream`.
 * `src` may be `dst` (in place). Four-step plans use pooled scratch, released after encoding.
 * Rows over one storage binding are transformed in bands (`pairedRowBands`), each binding a
 * window of src and dst, with the same results.
 * @throws Error for a bad length or row count, buffers smaller than `rows·n` elements, one row
 *   over the binding limit, or f16 requested on a device without `shader-f16`.
 */
export function encodeFht(
  gpu: Gpu,
  src: GPUBuffer,
  dst: GPUBuffer,
  rows: number,
  n: number,
  opts: FhtOptions = {},
): void {
  checkLength(n);
  if (!Number.isInteger(rows) || rows < 0) {
    throw new Error(`FHT row count must be an integer ≥ 0, got ${rows}`);
  }
  const f16 = opts.f16 ?? false;
  if (f16 && !gpu.f16) {
    throw new Error("FHT with f16 storage needs the 'shader-f16' feature, which this device lacks");
  }
  const unit = f16 ? 2 : 4;
  const ld = opts.input?.ld ?? n, offset = opts.input?.offset ?? 0, outOff = opts.output?.offset ?? 0;
  if (!Number.isInteger(ld) || ld < n || !Number.isInteger(offset) || offset < 0) {
    throw new Error(`FHT input rows ${ld} apart from element ${offset}: need integers, ld ≥ n = ${n}`);
  }
  if (!Number.isInteger(outOff) || outOff < 0) {
    throw new Error(`FHT output offset ${outOff}: need an integer ≥ 0`);
  }
  if (opts.input && src === dst) throw new Error("FHT: strided input rows cannot be transformed in place");
  if (opts.output && src === dst) {
    throw new Error("FHT: rows placed at an offset cannot be transformed in place");
  }
  const bytes = rows === 0 ? 0 : (outOff + rows * n) * unit;
  const srcBytes = rows === 0 ? 0 : (offset + (rows - 1) * ld + n) * unit;
  for (const [name, b, need] of [["src", src, srcBytes], ["dst", dst, bytes]] as const) {
    if (b.size < need) {
      throw new Error(
        `FHT ${name} buffer holds ${b.size} bytes, but ${rows} rows × ${n} ${f16 ? "f16" : "f32"}${
          name === "src" && opts.input ? ` (${ld} apart from element ${offset})` : ""
        }${name === "dst" && opts.output ? ` from element ${outOff}` : ""} need ${need}`,
      );
    }
  }
  if (rows === 0) return;
  const plan = getPlan(gpu, n);
  if (Math.max(bytes, srcBytes) <= bindingLimit(gpu)) {
    // Bind exactly the rows (a pooled buffer may be larger than the binding limit).
    const s = { buffer: src, size: Math.ceil(srcBytes / 4) * 4 },
      d = { buffer: dst, size: Math.ceil(bytes / 4) * 4 };
    encodeRows(gpu, plan, s, d, rows, f16, opts.scale ?? 1, { ld, inOff: offset, outOff });
    return;
  }
  for (const band of pairedRowBands(gpu, rows, Math.max(ld, n), `FHT of ${rows} × ${n}`, unit)) {
    const from = rowWindow(gpu, band.first, band.rows, ld, { offset, elementBytes: unit });
    const to = rowWindow(gpu, band.first, band.rows, n, { offset: outOff, elementBytes: unit });
    const s = clampedBinding(gpu, src, from), d = clampedBinding(gpu, dst, to);
    encodeRows(gpu, plan, s, d, band.rows, f16, opts.scale ?? 1, { ld, inOff: from.base, outOff: to.base });
  }
}

/** One dispatch group of {@link encodeFht}: `rows` rows from the bindings s and d (the same buffer in place). */
function encodeRows(
  gpu: Gpu,
  plan: AnyPlan,
  s: Binding,
  d: Binding,
  rows: number,
  f16: boolean,
  scale: number,
  at: Placement,
): void {
  const { n } = plan;
  const hscale = 0.5 * scale;
  const pairs = Math.ceil(rows / 2);
  const inPlace = bufferOf(s) === bufferOf(d);
  const tables = plan.chirp ? [plan.chirp, plan.bc!] : [];
  if (plan.kind === "shared" || plan.kind === "bluestein-shared") {
    const sp = plan as SharedPlan & AnyPlan;
    const k = kernel(plan, `s${f16}${inPlace}`, () =>
      fhtSharedKernel({
        n,
        fft: plan.fft,
        bluestein: plan.kind === "bluestein-shared",
        inPlace,
        f16,
        layout: sp.layout,
      }));
    const bufs = [...(inPlace ? [d] : [s, d]), ...(k.usesTwiddles ? [plan.tw] : []), ...tables];
    gpu.stream.dispatch(
      k,
      bufs,
      grid(gpu, Math.ceil(pairs / sp.layout.lines)),
      params(pairs, rows, hscale, 0, at),
    );
    return;
  }
  encodeFourStep(gpu, plan as FourStepPlan & AnyPlan, s, d, rows, f16, hscale, at);
}

function bufferOf(b: Binding): GPUBuffer {
  return b instanceof GPUBuffer ? b : b.buffer;
}

function encodeFourStep(
  gpu: Gpu,
  plan: FourStepPlan & AnyPlan,
  src: Binding,
  dst: Binding,
  rows: number,
  f16: boolean,
  hscale: number,
  at: Placement,
): void {
  const { n, fft: L, cols, rows: rowCfg } = plan;
  const bluestein = plan.kind === "bluestein-four-step";
  const pairs = Math.ceil(rows / 2);
  const limit = Math.min(SCRATCH_BYTES, bindingLimit(gpu), gpu.limits.maxBufferSize);
  const chunk = Math.max(1, Math.min(pairs, Math.floor(limit / (8 * L))));
  const s1 = gpu.pool.acquire(chunk * L * 8, undefined, "fht.scratch1");
  const s2 = bluestein ? gpu.pool.acquire(chunk * L * 8, undefined, "fht.scratch2") : null;
  const colsA = kernel(
    plan,
    `c${bluestein}${f16}`,
    () => fourStepColumnsKernel({ ...cols, f16 }, bluestein ? "chirp" : "real"),
  );
  const colGroups = Math.ceil(cols.n2 / cols.layout.lines);
  for (let pair0 = 0; pair0 < pairs; pair0 += chunk) {
    const cp = Math.min(chunk, pairs - pair0);
    const prm = params(cp, rows, hscale, pair0, at);
    const first = bluestein ? [src, s1, plan.tw, plan.chirp!] : [src, s1, plan.tw];
    gpu.stream.dispatch(colsA, first, grid(gpu, cp * colGroups), prm);
    if (!s2) {
      // The plain four-step writes the Hartley rows from its second half.
      const rowsU = kernel(plan, `ru${f16}`, () => fourStepRowsKernel({ ...rowCfg, f16 }, "unpack"));
      const groups = grid(gpu, cp * fourStepRowGroups(rowCfg, "unpack"));
      gpu.stream.dispatch(rowsU, [s1, dst, plan.tw], groups, prm);
      continue;
    }
    // Bluestein: FFT_L(chirp·z), then FFT_L(conj(·)·bc), then the chirp and the unpack in a
    // pass of its own (the mirror of k is −k mod n, not mod L).
    const rowsS = kernel(plan, "rs", () => fourStepRowsKernel(rowCfg, "scatter"));
    const colsM = kernel(plan, "cm", () => fourStepColumnsKernel(cols, "mapped"));
    const unpack = kernel(plan, `u${f16}`, () => bluesteinUnpackKernel(n, L, f16));
    const rowGroups = grid(gpu, cp * fourStepRowGroups(rowCfg, "scatter"));
    gpu.stream.dispatch(rowsS, [s1, s2, plan.tw], rowGroups, prm);
    gpu.stream.dispatch(colsM, [s2, s1, plan.tw, plan.bc!], grid(gpu, cp * colGroups), prm);
    gpu.stream.dispatch(rowsS, [s1, s2, plan.tw], rowGroups, prm);
    gpu.stream.dispatch(unpack, [s2, dst, plan.chirp!], grid(gpu, Math.ceil((cp * n) / UNPACK_THREADS)), prm);
  }
  gpu.pool.release(s1);
  if (s2) gpu.pool.release(s2);
}
