/**
 * The 2-D spectral transforms of SPEC §1.2 on the GPU, for any M × N (row-major, logical
 * (out, in)):
 * - `dht`: C_M X C_N — row FHTs, a tiled transpose, row FHTs of the transpose, transpose back;
 * - `dht2d` and `dft`: the same separable DHT T, then an O(M·N) fix-up
 *   (dht2d = ½[T(i,j) + T(−i,j) + T(i,−j) − T(−i,−j)], dft = ½[T(−i,j) + T(i,−j)]).
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { grid } from "../gpu/buffers.ts";
import { TRANSPOSE_TILE, transposeKernel } from "../../kernels/transpose.ts";
import { fixup2dKernel, FIXUP_THREADS } from "../../kernels/spectral2d.ts";
import { encodeFht } from "./fht.ts";

/** The transform option of an SSH adapter. */
export type Transform = "dht" | "dht2d" | "dft";

/** All transforms, in the order of SPEC §1.2. */
export const TRANSFORMS: readonly Transform[] = ["dht", "dht2d", "dft"];

/** Options of {@link encodeTransform2d}. */
export interface Transform2dOptions {
  /** Multiplies the result (default 1). */
  scale?: number;
}

const FIXUPS = { dht2d: fixup2dKernel("dht2d"), dft: fixup2dKernel("dft") };

/**
 * Encode `dst = transpose(src)` for a row-major `rows × cols` f32 matrix, written from element
 * `at` of dst, or added there with `accumulate`.
 */
export function encodeTranspose(
  gpu: Gpu,
  src: GPUBuffer,
  dst: GPUBuffer,
  rows: number,
  cols: number,
  opts: { at?: number; accumulate?: boolean } = {},
): void {
  const p = new Uint32Array([rows, cols, opts.at ?? 0, 0]);
  gpu.stream.dispatch(transposeKernel(opts.accumulate ?? false), [src, dst], [
    Math.ceil(cols / TRANSPOSE_TILE),
    Math.ceil(rows / TRANSPOSE_TILE),
  ], p);
}

/**
 * Encode `dst = scale · T(src)` for the `m × n` f32 matrix in `src` (`src` may be `dst`), with
 * T the transform `kind`. Uses two pooled temporaries of m·n floats, released after encoding.
 * @throws Error for an unknown transform, a bad shape, or buffers smaller than m·n floats.
 */
export function encodeTransform2d(
  gpu: Gpu,
  kind: Transform,
  src: GPUBuffer,
  dst: GPUBuffer,
  m: number,
  n: number,
  opts: Transform2dOptions = {},
): void {
  if (!TRANSFORMS.includes(kind)) {
    throw new Error(`unknown transform '${kind}': expected one of ${TRANSFORMS.join(", ")}`);
  }
  for (const [name, v] of [["rows", m], ["columns", n]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new Error(`2-D ${kind}: ${name} must be an integer ≥ 1, got ${v}`);
    }
  }
  const bytes = m * n * 4;
  for (const [name, b] of [["src", src], ["dst", dst]] as const) {
    if (b.size < bytes) {
      throw new Error(`2-D ${kind} of ${m} × ${n}: ${name} buffer holds ${b.size} bytes, ${bytes} needed`);
    }
  }
  const scale = opts.scale ?? 1;
  const a = gpu.pool.acquire(bytes, undefined, "transform2d.a");
  const b = gpu.pool.acquire(bytes, undefined, "transform2d.b");
  encodeFht(gpu, src, a, m, n);
  encodeTranspose(gpu, a, b, m, n);
  encodeFht(gpu, b, b, n, m, { scale: kind === "dht" ? scale : 1 });
  if (kind === "dht") {
    encodeTranspose(gpu, b, dst, n, m);
  } else {
    encodeTranspose(gpu, b, a, n, m);
    const p = new Uint32Array([m, n, 0, 0]);
    new Float32Array(p.buffer)[2] = 0.5 * scale;
    gpu.stream.dispatch(FIXUPS[kind], [a, dst], grid(gpu, Math.ceil((m * n) / FIXUP_THREADS)), p);
  }
  gpu.pool.release(a);
  gpu.pool.release(b);
}
