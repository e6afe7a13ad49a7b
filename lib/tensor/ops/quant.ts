/**
 * Quantized storage of frozen weights (dtypes q8 and q4): quantizing an f32 tensor and turning
 * one back into f32 values. No autograd: quantized tensors never train.
 * @module
 */
import { dequantizeKernel, groupWords, QUANTIZE_WG, quantizeKernel } from "../../../kernels/quant.ts";
import { QUANT_GROUP, type QuantKind } from "../quant_format.ts";
import { bandBinding, rowBands, rowWindow } from "../../gpu/bands.ts";
import { isQuantized, Tensor } from "../tensor.ts";
import { expectDtype, launch, launchUnits, u32s } from "./util.ts";

/** x (f32) stored as `kind`: codes and one scale per 32 values (lib/tensor/quant_format.ts). */
export function quantize(x: Tensor, kind: QuantKind, label?: string): Tensor {
  expectDtype("quantize", "f32", x);
  const q = Tensor.empty(x.gpu, x.shape, kind, label);
  // a large vocabulary's table may be over one storage binding: bands of groups
  const perGroup: [GPUBuffer, number][] = [
    [x.buffer, 4 * QUANT_GROUP],
    [q.buffer, 4 * groupWords(kind)],
    [q.scales!, 4],
  ];
  const groups = Math.ceil(x.size / QUANT_GROUP);
  launchUnits(
    x.gpu,
    quantizeKernel(kind),
    perGroup,
    groups,
    (first, count) => u32s(Math.min(x.size - first * QUANT_GROUP, count * QUANT_GROUP)),
    QUANTIZE_WG,
  );
  return q;
}

/** The values of quantized `src` written into f32 `dst` from element `at`. */
export function dequantizeInto(src: Tensor, dst: Tensor, at = 0): void {
  const kind = src.dtype;
  if (!isQuantized(kind)) throw new Error(`dequantize: expected a q8 or q4 tensor, got ${src.describe()}`);
  expectDtype("dequantize", "f32", dst);
  if (at < 0 || at + src.size > dst.size) {
    throw new Error(`dequantize: ${src.describe()} does not fit ${dst.describe()} from element ${at}`);
  }
  const gpu = src.gpu, words = groupWords(kind);
  dst.touch();
  // values over one storage binding (a large vocabulary's table) go in bands of whole groups
  const groups = Math.ceil(src.size / QUANT_GROUP), what = `dequantize into ${dst.describe()}`;
  for (const band of rowBands(gpu, groups, QUANT_GROUP, what, { offset: at })) {
    const first = band.first * QUANT_GROUP, n = Math.min(band.rows * QUANT_GROUP, src.size - first);
    const codes = rowWindow(gpu, band.first, band.rows, words);
    const scales = rowWindow(gpu, band.first, band.rows, 1);
    // the band's values alone: its last group may be part-filled
    const values = rowWindow(gpu, first, n, 1, { offset: at });
    launch(
      gpu,
      dequantizeKernel(kind),
      [
        bandBinding(gpu, src.buffer, codes),
        bandBinding(gpu, src.scales, scales),
        bandBinding(gpu, dst.buffer, values),
      ],
      band.rows * words,
      u32s(n, values.base, codes.base, scales.base),
    );
  }
}
