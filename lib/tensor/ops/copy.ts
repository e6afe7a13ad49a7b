/**
 * Encode a strided copy between tensors (the primitive behind permute, slice, concat,
 * broadcast-to and casts). No autograd here.
 * @module
 */
import { copyKernel, type CopyType } from "../../../kernels/layout.ts";
import { collapse } from "../shape.ts";
import type { DType, Tensor } from "../tensor.ts";
import { launch, u32s } from "./util.ts";

function copyType(dtype: DType, converting: boolean): CopyType {
  if (dtype === "f16") return "f16";
  return converting ? "f32" : "u32";
}

/**
 * For every index `c` of `shape`: `dst[dstOffset + c·dstStrides] = src[srcOffset + c·srcStrides]`
 * (element offsets), converting between f32 and f16 when the dtypes differ.
 */
export function stridedCopy(
  src: Tensor,
  dst: Tensor,
  shape: readonly number[],
  srcStrides: readonly number[],
  dstStrides: readonly number[],
  srcOffset = 0,
  dstOffset = 0,
): void {
  const plan = collapse(shape, [srcStrides, dstStrides]);
  const n = plan.shape.reduce((a, b) => a * b, 1);
  if (shape.some((d) => d === 0)) return;
  const converting = src.dtype !== dst.dtype;
  const kernel = copyKernel(
    plan.shape.length,
    copyType(src.dtype, converting),
    copyType(dst.dtype, converting),
  );
  const params = u32s(n, srcOffset, dstOffset, ...plan.shape, ...plan.strides[0], ...plan.strides[1]);
  launch(src.gpu, kernel, [src.buffer, dst.buffer], n, params);
}
