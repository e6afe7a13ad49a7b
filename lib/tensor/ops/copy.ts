/**
 * Encode a strided copy between tensors (the primitive behind permute, slice, concat,
 * broadcast-to and casts). No autograd here.
 * @module
 */
import { copyKernel, type CopyType } from "../../../kernels/layout.ts";
import { bindingLimit } from "../../gpu/bands.ts";
import { collapse } from "../shape.ts";
import { type DType, isQuantized, type Tensor } from "../tensor.ts";
import { dequantizeInto } from "./quant.ts";
import { launch, u32s } from "./util.ts";

function copyType(dtype: DType, converting: boolean): CopyType {
  if (isQuantized(dtype)) throw new Error(`a strided copy cannot read or write ${dtype} tensors`);
  if (dtype === "f16") return "f16";
  return converting ? "f32" : "u32";
}

/**
 * For every index `c` of `shape`: `dst[dstOffset + c·dstStrides] = src[srcOffset + c·srcStrides]`
 * (element offsets), converting between f32 and f16 when the dtypes differ; with `accumulate`
 * (f32 tensors), `+=`.
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
  const n = plan.shape.reduce((a, b) => a * b, 1);
  const kernel = copyKernel(plan.shape.length, from, to, accumulate);
  const params = u32s(n, offsets[0], offsets[1], ...plan.shape, ...plan.strides[0], ...plan.strides[1]);
  launch(src.gpu, kernel, [src.buffer, dst.buffer], n, params);
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
