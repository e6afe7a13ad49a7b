/**
 * Tensor element types of safetensors files and conversions between float16, bfloat16 and
 * float32. Half-precision values travel as their raw 16-bit patterns in `Uint16Array`s.
 * Conversions to 16 bits round to nearest, ties to even (as torch's `.half()`/`.bfloat16()`);
 * NaN stays NaN (quiet), overflow becomes ±Infinity, and f16 keeps subnormals.
 * Typed arrays use the host's byte order; safetensors is little-endian, as are the hosts
 * Deno runs on (x86-64, arm64).
 * @module
 */

/** The element types this project reads and writes (safetensors' names). */
export type Dtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

/** A typed array holding a tensor in its own dtype (16-bit floats as raw bits). */
export type TypedArray =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

type ArrayCtor = { new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TypedArray };

/** Per dtype: bytes per element and the typed array that holds it. */
export const DTYPES: Readonly<Record<Dtype, { size: number; array: ArrayCtor }>> = {
  F64: { size: 8, array: Float64Array },
  F32: { size: 4, array: Float32Array },
  F16: { size: 2, array: Uint16Array },
  BF16: { size: 2, array: Uint16Array },
  I64: { size: 8, array: BigInt64Array },
  I32: { size: 4, array: Int32Array },
  I16: { size: 2, array: Int16Array },
  I8: { size: 1, array: Int8Array },
  U8: { size: 1, array: Uint8Array },
  BOOL: { size: 1, array: Uint8Array },
};

/** Whether `s` names a dtype of {@link DTYPES}. */
export function isDtype(s: unknown): s is Dtype {
  return typeof s === "string" && Object.hasOwn(DTYPES, s);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The f32 bit pattern (uint32) of an f16 bit pattern; exact. */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, NaN (payload kept)
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: shift the leading one into the implicit bit position.
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/** The f16 bit pattern nearest (ties to even) to the f32 bit pattern `x`. */
function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // the f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    mant |= 0x800000;
    const shift = 14 - e;
    const m = mant >>> shift, rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    // A carry out of the mantissa lands on the smallest normal's encoding, which is right.
    return sign | (m + (rem > half || (rem === half && (m & 1)) ? 1 : 0));
  }
  const m = mant >>> 13, rem = mant & 0x1fff;
  // A carry into the exponent is the correct rounding (up to Infinity at the top).
  return (sign | (e << 10) | m) + (rem > 0x1000 || (rem === 0x1000 && (m & 1)) ? 1 : 0);
}

let f16Table: Float32Array | undefined;

/** f32 value of every f16 pattern (256 KiB, built on first use). */
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    const bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) bits[h] = f16BitsToF32Bits(h);
    f16Table = new Float32Array(bits.buffer);
  }
  return f16Table;
}

/** The value of the f16 bit pattern `bits`. */
export function f16ToNumber(bits: number): number {
  u32[0] = f16BitsToF32Bits(bits & 0xffff);
  return f32[0];
}

/** The f16 bit pattern nearest to `x` (first rounded to f32). */
export function numberToF16(x: number): number {
  f32[0] = x;
  return f32BitsToF16Bits(u32[0]);
}

/** The value of the bf16 bit pattern `bits`. */
export function bf16ToNumber(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/** The bf16 bit pattern nearest to `x` (first rounded to f32). */
export function numberToBf16(x: number): number {
  f32[0] = x;
  return f32BitsToBf16Bits(u32[0]);
}

function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f16 bit patterns → f32 values (exact). */
export function f16ToF32(src: Uint16Array): Float32Array {
  const table = f16ToF32Table();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

/** bf16 bit patterns → f32 values (exact). */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return new Float32Array(out.buffer);
}

/**
 * Values → f16 bit patterns, rounding to nearest even. A Float64Array is rounded to f32
 * first (double rounding can differ from a direct f64 → f16 rounding in the last bit, on
 * values within 2^-24 relative of a tie).
 */
export function f32ToF16(src: Float32Array | Float64Array): Uint16Array {
  return narrow(src, f32BitsToF16Bits);
}

/** Values → bf16 bit patterns, rounding to nearest even (f64 input via f32, as {@link f32ToF16}). */
export function f32ToBf16(src: Float32Array | Float64Array): Uint16Array {
  return narrow(src, f32BitsToBf16Bits);
}

function narrow(src: Float32Array | Float64Array, fn: (bits: number) => number): Uint16Array {
  const out = new Uint16Array(src.length);
  const chunk = 4096;
  const scratch = new Float32Array(Math.min(chunk, src.length));
  const bits = new Uint32Array(scratch.buffer);
  for (let start = 0; start < src.length; start += chunk) {
    const n = Math.min(chunk, src.length - start);
    scratch.set(src.subarray(start, start + n));
    for (let i = 0; i < n; i++) out[start + i] = fn(bits[i]);
  }
  return out;
}

/**
 * A tensor's values as float32, whatever its dtype: f16/bf16 exactly, f64 rounded, integers
 * converted (exact up to 2^24 in magnitude), BOOL as 0/1. Returns `data` itself for F32.
 */
export function toFloat32(dtype: Dtype, data: TypedArray): Float32Array {
  switch (dtype) {
    case "F32":
      return data as Float32Array;
    case "F16":
      return f16ToF32(data as Uint16Array);
    case "BF16":
      return bf16ToF32(data as Uint16Array);
    case "I64": {
      const src = data as BigInt64Array, out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return out;
    }
    default:
      return Float32Array.from(data as Exclude<TypedArray, BigInt64Array>);
  }
}

/** The float dtypes {@link fromFloat} writes. */
export type FloatDtypeName = "F64" | "F32" | "F16" | "BF16";

/**
 * Per float dtype: its largest finite value, and the least float64 magnitude that it stores as
 * ±Infinity (F16 and BF16 round via f32, as {@link fromFloat} does: half an f32 ulp below the least
 * f32 they round to ±Infinity; a tie there rounds to even, up).
 */
export const FLOAT_RANGE: Readonly<Record<FloatDtypeName, { max: number; overflow: number }>> = {
  F64: { max: Number.MAX_VALUE, overflow: Infinity },
  F32: { max: 2 ** 128 - 2 ** 104, overflow: 2 ** 128 - 2 ** 103 },
  F16: { max: 65504, overflow: 65520 - 2 ** -9 },
  BF16: { max: 2 ** 128 - 2 ** 120, overflow: 2 ** 128 - 2 ** 119 - 2 ** 103 },
};

/** The first index of `values` that `dtype`, written by {@link fromFloat}, cannot hold finite (NaN, ±Infinity, beyond its range), or -1. */
export function firstUnstorable(values: Float32Array | Float64Array, dtype: FloatDtypeName): number {
  const { overflow } = FLOAT_RANGE[dtype];
  for (let i = 0; i < values.length; i++) {
    if (!(Math.abs(values[i]) < overflow)) return i;
  }
  return -1;
}

/**
 * Float values → the bytes of a float dtype (F64, F32, F16 or BF16), rounding to nearest even.
 * Returns `src` itself when it already is that dtype's array type.
 */
export function fromFloat(
  dtype: FloatDtypeName,
  src: Float32Array | Float64Array,
): TypedArray {
  switch (dtype) {
    case "F64":
      return src instanceof Float64Array ? src : Float64Array.from(src);
    case "F32":
      return src instanceof Float32Array ? src : Float32Array.from(src);
    case "F16":
      return f32ToF16(src);
    case "BF16":
      return f32ToBf16(src);
  }
}
