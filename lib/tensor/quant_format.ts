/**
 * The quantized storage of frozen weights (`q8`, `q4`), as the GPU holds it: the values in
 * row-major order fall into groups of {@link QUANT_GROUP}, each with one f32 scale d = m / top (m
 * its value of largest magnitude, the first one) and codes c = round(x / d) clamped to the kind's
 * range, standing for the values c·d. q8 codes lie in [−127, 127] with top 127; q4 codes in
 * [−8, 7] with top −8, so m lands on −8 and all 16 codes are used (as llama.cpp's Q4_0). Codes are
 * packed little-endian into 32-bit words: q8 four two's-complement bytes a word, q4 eight nibbles
 * holding c + 8. The float64 quantizer is lib/tensor/quant_format.ts.
 * @module
 */

/** Quantized storage kinds. */
export type QuantKind = "q8" | "q4";

/** Values per scale. */
export const QUANT_GROUP = 32;

/** A kind's codes [low, high] and the code `top` that a group's largest value gets. */
export const QUANT_CODES: Record<QuantKind, { low: number; high: number; top: number }> = {
  q8: { low: -127, high: 127, top: 127 },
  q4: { low: -8, high: 7, top: -8 },
};

/** Bits per code. */
export const QUANT_BITS: Record<QuantKind, number> = { q8: 8, q4: 4 };

/** 32-bit words holding `codes`, as the GPU stores them (whole groups; padding codes are 0). */
export function packCodes(codes: Int8Array, kind: QuantKind): Uint32Array {
  const bits = QUANT_BITS[kind], per = 32 / bits;
  const words = new Uint32Array((Math.ceil(codes.length / QUANT_GROUP) * QUANT_GROUP) / per);
  const offset = kind === "q4" ? 8 : 0, mask = (1 << bits) - 1;
  for (let w = 0; w < words.length; w++) {
    let word = 0;
    for (let j = 0; j < per; j++) {
      const c = codes[w * per + j] ?? 0;
      word |= ((c + offset) & mask) << (j * bits);
    }
    words[w] = word >>> 0;
  }
  return words;
}

/** The first `count` codes of packed words (the inverse of {@link packCodes}). */
export function unpackCodes(words: Uint32Array, count: number, kind: QuantKind): Int8Array {
  const bits = QUANT_BITS[kind], per = 32 / bits;
  const codes = new Int8Array(count);
  for (let i = 0; i < count; i++) {
    const field = (words[Math.floor(i / per)] >>> ((i % per) * bits)) & ((1 << bits) - 1);
    codes[i] = kind === "q4" ? field - 8 : (field << 24) >> 24;
  }
  return codes;
}

/** The values `codes` stand for, each times its group's scale (code·d). */
export function decodeValues(codes: Int8Array, scales: ArrayLike<number>): Float64Array {
  return Float64Array.from(codes, (c, i) => c * scales[Math.floor(i / QUANT_GROUP)]);
}
