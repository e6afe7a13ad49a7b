/**
 * ΔW = (α/(M·N))·C_M S̃ C_N in one dispatch (kernels/delta_weight.ts) where M's transform fits
 * a workgroup: folding and merging write it into a weight (at an offset, transposed or not, or
 * W + ΔW into a copy from W itself) without the three passes of cas rows, a row FHT and a
 * transpose. A band of ΔWᵀ's rows (ΔW over one storage binding) is a dispatch of its own, or the
 * first of three passes ({@link encodeCasBand}).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { grid } from "../gpu/buffers.ts";
import type { Kernel } from "../gpu/pipelines.ts";
import type { Binding } from "../gpu/stream.ts";
import { CAS_BAND_THREADS, casBandKernel, deltaWeightKernel } from "../../kernels/delta_weight.ts";
import { workgroupFhtLayout } from "./fht.ts";
import { casTable, type SparseSpectrum } from "./sparse.ts";

/** Switches of the one-dispatch ΔW (benchmarks and tests turn it off). */
export const DELTA_WEIGHT_HEURISTICS: {
  /** Take the one-dispatch route where it applies. */
  fused: boolean;
  /** Complex elements per workgroup aimed at (lines of M, each a pair of ΔWᵀ's rows). */
  elements: number;
} = { fused: true, elements: 2048 };

/** Fewest lines per workgroup for ΔW (not transposed): 8 columns, 32 bytes of each row. */
const MIN_LINES = 4;

/** Generated kernels by their configuration (generated once each). */
const kernels = new Map<string, Kernel & { usesTwiddles: boolean }>();
/** The cas band kernel for N < 65536 and for wider N. */
const CAS_BANDS = [casBandKernel(false), casBandKernel(true)];

/**
 * `dst[at ..] (+)= (α/MN)·ΔW` (M×N row-major, or ΔWᵀ N×M with `transposed`) in one dispatch, or
 * with `base`, `dst[at ..] = base + (α/MN)·ΔW` (base in the same layout from its element 0);
 * false, encoding nothing, when this route does not apply (switched off, M needs Bluestein, or
 * ΔW's lines of M do not fit workgroup memory four at a time). With `rows` (ΔWᵀ only, not with
 * `base`), only ΔWᵀ's rows [first, first + count), placed from element `at` of the binding `dst`.
 * @throws RangeError when N ≥ 2²⁴ (the cas index would overflow u32).
 */
export function encodeDeltaWeight(
  gpu: Gpu,
  spectrum: SparseSpectrum,
  coef: GPUBuffer,
  dst: Binding,
  scale: number,
  opts: {
    transposed: boolean;
    accumulate: boolean;
    at: number;
    base?: GPUBuffer;
    rows?: { first: number; count: number };
  },
): boolean {
  const { m, n } = spectrum;
  if (!DELTA_WEIGHT_HEURISTICS.fused) return false;
  if (opts.rows && (!opts.transposed || opts.base)) {
    throw new Error("encodeDeltaWeight: a band of rows is of ΔWᵀ, without `base`");
  }
  // ΔW's stores walk its rows: a workgroup writes 2·lines columns side by side in each, which
  // should fill a 32-byte sector (ΔWᵀ's stores run along its rows whatever the line count)
  const least = opts.transposed ? 1 : MIN_LINES;
  const want = Math.max(least, Math.floor(DELTA_WEIGHT_HEURISTICS.elements / m));
  const found = workgroupFhtLayout(gpu, m, want);
  if (!found || found.layout.lines < least) return false;
  const { layout, tw } = found;
  const mode = opts.base ? "base" : opts.accumulate ? "add" : "write";
  const config = { m, layout, transposed: opts.transposed, mode, wide: wideCas(n) } as const;
  const key = JSON.stringify(config);
  let kernel = kernels.get(key);
  if (!kernel) kernels.set(key, kernel = deltaWeightKernel(config));
  const ptr = spectrum.rowsOffset;
  const { first, count } = opts.rows ?? { first: 0, count: n };
  const params = new Uint32Array([n, ptr, ptr + m + 1, opts.at, 0, first, first + count, 0]);
  new Float32Array(params.buffer)[4] = 0.5 * scale;
  const bufs = [
    spectrum.plan,
    coef,
    casTable(gpu, n),
    dst,
    ...(opts.base ? [opts.base] : []),
    ...(kernel.usesTwiddles ? [tw] : []),
  ];
  gpu.stream.dispatch(kernel, bufs, grid(gpu, Math.ceil(Math.ceil(count / 2) / layout.lines)), params);
  return true;
}

/**
 * `out` (count × M, packed) = rows [first, first + count) of (S̃·C_N)ᵀ, s.t. an FHT of its rows
 * along M gives those rows of ΔWᵀ: the first pass of a band of ΔW made in three passes.
 * @throws RangeError when N ≥ 2²⁴ (the cas index would overflow u32).
 */
export function encodeCasBand(
  gpu: Gpu,
  spectrum: SparseSpectrum,
  coef: GPUBuffer,
  out: GPUBuffer,
  first: number,
  count: number,
): void {
  const { m, n } = spectrum, ptr = spectrum.rowsOffset;
  const params = new Uint32Array([m, n, ptr, ptr + m + 1, first, count]);
  const groups = grid(gpu, Math.ceil((m * count) / CAS_BAND_THREADS));
  const kernel = CAS_BANDS[wideCas(n) ? 1 : 0];
  gpu.stream.dispatch(kernel, [spectrum.plan, coef, casTable(gpu, n), out], groups, params);
}

/** Whether cas indices j·col mod n need the overflow-free arithmetic (n ≥ 65536); throws past 2²⁴. */
function wideCas(n: number): boolean {
  if (n >= 1 << 24) throw new RangeError(`ΔW: ${n} columns of S̃ are over the 2^24 its cas indices allow`);
  return n >= 65536;
}
