/**
 * Encode a strided copy between tensors (the primitive behind permute, slice, concat,
 * broadcast-to and casts). No autograd here.
 * @module
 */
import { copyKernel, type CopyType } from "../../../kernels/layout.ts";
import { bandBinding, bindingLimit, type RowBand, rowWindow } from "../../gpu/bands.ts";
import type { Gpu } from "../../gpu/device.ts";
import { collapse } from "../shape.ts";
import { type DType, isQuantized, type Tensor } from "../tensor.ts";
import { dequantizeInto } from "./quant.ts";
import { launch, u32s } from "./util.ts";

function copyType(dtype: DType, converting: boolean): CopyType {
  if (isQuantized(dtype)) throw new Error(`a strided copy cannot read or write ${dtype} tensors`);
  if (dtype === "f16") return "f16";
  return converting ? "f32" : "u32";
}

/** Bytes of one element of a copy kernel's `array<type>`. */
const UNIT_BYTES: Record<CopyType, number> = { "f16": 2, "f32": 4, "u32": 4, "vec4<u32>": 16 };

/**
 * For every index `c` of `shape`: `dst[dstOffset + c·dstStrides] = src[srcOffset + c·srcStrides]`
 * (element offsets), converting between f32 and f16 when the dtypes differ; with `accumulate`
 * (f32 tensors), `+=`. A buffer over one storage binding is bound in windows, a band of the
 * collapsed leading dimension at a time; throws when one index of it alone reaches over one.
 */
export function stridedCopy(
  src: Tensor,
  dst: Tensor,
  shape: readonly number[],
  srcStrides: readonly number[],
  dstStrides: readonly number[],
  srcOffset = 0,
  dstOffset = 0,
  accumulate = false,
): void {
  let plan = collapse(shape, [srcStrides, dstStrides]);
  if (shape.some((d) => d === 0)) return;
  dst.touch(); // dst may be a frozen tensor something was built from
  const converting = src.dtype !== dst.dtype;
  let [from, to] = accumulate
    ? ["f32", "f32"] as CopyType[]
    : [copyType(src.dtype, converting), copyType(dst.dtype, converting)];
  const offsets = [srcOffset, dstOffset];
  // a contiguous run of a buffer over one storage binding (a row of an LM head's logits) moves
  // as a buffer copy, which binds nothing
  const limit = bindingLimit(src.gpu), bytes = src.dtype === "f16" ? 2 : 4;
  const run = plan.shape.length === 1 && plan.strides.every((st) => st[0] === 1);
  const words = [...offsets, plan.shape[0]].every((v) => (v * bytes) % 4 === 0);
  if (!converting && !accumulate && run && words && Math.max(src.buffer.size, dst.buffer.size) > limit) {
    src.gpu.stream.copy(
      src.buffer,
      offsets[0] * bytes,
      dst.buffer,
      offsets[1] * bytes,
      plan.shape[0] * bytes,
    );
    return;
  }
  if (from === "u32" && to === "u32" && byFour(plan.shape, plan.strides, offsets)) {
    // whole 16-byte words: a quarter of the invocations and of their index arithmetic (the
    // attention head permutes move rows of 64 floats)
    const last = plan.shape.length - 1;
    plan = {
      shape: plan.shape.map((d, i) => (i === last ? d / 4 : d)),
      strides: plan.strides.map((st) => st.map((v, i) => (i === last ? 1 : v / 4))),
    };
    offsets[0] /= 4;
    offsets[1] /= 4;
    from = to = "vec4<u32>";
  }
  const kernel = copyKernel(plan.shape.length, from, to, accumulate);
  const [rows, ...rest] = plan.shape, inner = rest.reduce((a, b) => a * b, 1);
  const sides = [src.buffer, dst.buffer].map((buffer, k): CopySide => ({
    buffer,
    offset: offsets[k],
    step: plan.strides[k][0],
    span: rest.reduce((a, d, i) => a + (d - 1) * plan.strides[k][i + 1], 1),
    unit: UNIT_BYTES[[from, to][k]],
  }));
  for (const band of copyBands(src.gpu, rows, sides)) {
    const n = band.rows * inner;
    const params = u32s(
      n,
      band.windows[0].base,
      band.windows[1].base,
      band.rows,
      ...rest,
      ...plan.strides.flat(),
    );
    const buffers = band.windows.map((w, k) => bandBinding(src.gpu, sides[k].buffer, w));
    launch(src.gpu, kernel, buffers, n, params);
  }
}

/**
 * One side of a strided copy: its buffer and first element, the elements between leading
 * indices (`step`) and the elements one leading index reaches (`span`), the bytes of one.
 */
interface CopySide {
  buffer: GPUBuffer;
  offset: number;
  step: number;
  span: number;
  unit: number;
}

/**
 * Bands of a strided copy's `rows` leading indices, each with the window of every side that its
 * indices reach: one band (whole buffers) when every buffer fits one binding, else as many rows a
 * band as keep every side's reach within one binding beside the alignment slack.
 */
function copyBands(
  gpu: Gpu,
  rows: number,
  sides: readonly CopySide[],
): { rows: number; windows: RowBand[] }[] {
  const limit = bindingLimit(gpu);
  if (sides.every((s) => s.buffer.size <= limit)) {
    return [{
      rows,
      windows: sides.map((s) => ({ first: 0, rows, start: 0, size: s.buffer.size, base: s.offset })),
    }];
  }
  const room = limit - gpu.limits.minStorageBufferOffsetAlignment;
  // a side's reach over `count` indices is (count - 1)·step + span elements
  const fits = sides.map((s) => s.step === 0 ? Infinity : Math.floor((room / s.unit - s.span) / s.step) + 1);
  if (sides.some((s) => s.span * s.unit > room)) {
    throw new Error(
      `a strided copy: one index of its leading dimension reaches over the largest storage binding (${limit} bytes)`,
    );
  }
  const per = Math.min(rows, ...fits);
  const bands = [];
  for (let first = 0; first < rows; first += per) {
    const count = Math.min(per, rows - first);
    const windows = sides.map((s) =>
      rowWindow(gpu, 0, 1, (count - 1) * s.step + s.span, {
        offset: s.offset + first * s.step,
        elementBytes: s.unit,
      })
    );
    bands.push({ rows: count, windows });
  }
  return bands;
}

/** The innermost dimension is contiguous on both sides and everything else moves by 4 elements. */
function byFour(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  offsets: number[],
): boolean {
  const last = shape.length - 1;
  return shape[last] % 4 === 0 && offsets.every((o) => o % 4 === 0) &&
    strides.every((st) => st[last] === 1 && st.every((v, i) => i === last || v % 4 === 0));
}

/**
 * All of `src` into `dst` from element `at` (f16 and quantized values converted to f32 on the
 * way): a buffer copy when the bytes allow one, else a strided copy. No autograd.
 */
export function copyAll(src: Tensor, dst: Tensor, at = 0): void {
  if (isQuantized(src.dtype)) return dequantizeInto(src, dst, at);
  const bytes = src.dtype === "f16" ? 2 : 4;
  // a buffer copy moves whole 4-byte words
  if (src.dtype === dst.dtype && (at * bytes) % 4 === 0 && (src.size * bytes) % 4 === 0) {
    dst.touch();
    src.gpu.stream.copy(src.buffer, 0, dst.buffer, at * bytes, src.size * bytes);
  } else {
    stridedCopy(src, dst, [src.size], [1], [1], 0, at);
  }
}
