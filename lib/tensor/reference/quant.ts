/**
 * Float64 reference of the quantized storage of frozen weights (lib/tensor/quant_format.ts):
 * values quantized into codes and group scales, and the values they stand for.
 * @module
 */
import { decodeValues, QUANT_CODES, QUANT_GROUP, type QuantKind } from "../quant_format.ts";

/** Codes and scales of values quantized as `kind`. */
export interface QuantizedValues {
  /** One signed code per value. */
  codes: Int8Array;
  /** One scale per group (the last group may be partial). */
  scales: Float64Array;
}

/** Quantize `x` (the format of lib/tensor/quant_format.ts). Half-way codes round away from zero. */
export function quantizeReference(x: ArrayLike<number>, kind: QuantKind): QuantizedValues {
  const { low, high, top } = QUANT_CODES[kind];
  const groups = Math.ceil(x.length / QUANT_GROUP);
  const codes = new Int8Array(x.length), scales = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    const end = Math.min(x.length, (g + 1) * QUANT_GROUP);
    let m = 0;
    for (let i = g * QUANT_GROUP; i < end; i++) if (Math.abs(x[i]) > Math.abs(m)) m = x[i];
    const d = m / top;
    scales[g] = d;
    if (d === 0) continue;
    for (let i = g * QUANT_GROUP; i < end; i++) {
      const q = x[i] / d;
      codes[i] = Math.max(low, Math.min(high, Math.sign(q) * Math.floor(Math.abs(q) + 0.5)));
    }
  }
  return { codes, scales };
}

/** The values codes and scales stand for. */
export function dequantizeReference(q: QuantizedValues): Float64Array {
  return decodeValues(q.codes, q.scales);
}
