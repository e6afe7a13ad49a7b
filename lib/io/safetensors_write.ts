/**
 * Writing safetensors files ({@link writeSafetensors}, and {@link writeSafetensorsLazily} for a
 * checkpoint larger than memory), atomically and in the layout of the reference `safetensors`
 * library: tensors ordered by dtype then name, `__metadata__` first, the header padded to 8 bytes,
 * so a file it wrote, re-written from its parsed tensors, comes out byte for byte the same. The
 * format, and reading, are lib/io/safetensors.ts's.
 * @module
 */
import { withAtomicFile, writeAll } from "./atomic.ts";
import { type Dtype, DTYPES, fromFloat, isDtype, type TypedArray } from "./dtype.ts";
import { checkShape, fail, SUPPORTED } from "./safetensors.ts";

/** A tensor to write. */
export interface TensorData {
  /** Element type to store. */
  dtype: Dtype;
  /** Dimensions, outermost first; their product is the element count. */
  shape: readonly number[];
  /**
   * The values: a typed array of exactly the dtype's bytes (F16/BF16 as raw bits in a
   * Uint16Array), or, for F64/F32/F16/BF16, a Float32Array/Float64Array that is converted
   * (rounding to nearest even).
   */
  data: TypedArray;
}

/**
 * Write `tensors` to `path` atomically, laid out as the reference library does: tensors
 * ordered by dtype (widest alignment first) then by name, `__metadata__` first (keys sorted)
 * when given, header padded with spaces to a multiple of 8 bytes.
 */
export async function writeSafetensors(
  path: string,
  tensors: Readonly<Record<string, TensorData>>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const items = Object.entries(tensors).map(([name, t]) => {
    const bytes = tensorBytes(path, name, t);
    return { name, dtype: t.dtype, shape: t.shape, data: () => Promise.resolve(bytes) };
  });
  await writeSafetensorsLazily(path, items, metadata);
}

/** A tensor to write whose values are fetched only when the writer reaches it. */
export interface LazyTensor {
  name: string;
  /** Element type to store. */
  dtype: Dtype;
  /** Dimensions, outermost first. */
  shape: readonly number[];
  /** The values, as {@link TensorData.data}. */
  data: () => Promise<TypedArray>;
  /** Called once its bytes are in the file (they may be let go). */
  written?: () => void;
}

/**
 * {@link writeSafetensors}, the same file, with each tensor's values fetched in turn as the file
 * is written: a checkpoint larger than memory is written one tensor at a time (a merge).
 */
export async function writeSafetensorsLazily(
  path: string,
  tensors: readonly LazyTensor[],
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const items = tensors.map((t) => {
    if (!isDtype(t.dtype)) {
      fail(path, `tensor "${t.name}": unknown dtype ${JSON.stringify(t.dtype)} ${SUPPORTED}`);
    }
    if (t.name === "__metadata__") fail(path, `"__metadata__" cannot name a tensor`);
    const shape = checkShape(path, t.name, t.shape);
    return { ...t, shape, byteLength: shape.reduce((a, b) => a * b, 1) * DTYPES[t.dtype].size };
  });
  items.sort((a, b) => DTYPE_ORDER[b.dtype] - DTYPE_ORDER[a.dtype] || compareCodePoints(a.name, b.name));
  // the header as ordered entries: a JS object would put integer-like names ("2", "10") first
  const header: [string, string][] = [];
  if (metadata) {
    const keys = Object.keys(metadata).sort(compareCodePoints);
    for (const k of keys) {
      if (typeof metadata[k] !== "string") {
        fail(path, `metadata "${k}" must be a string, got ${typeof metadata[k]}`);
      }
    }
    header.push(["__metadata__", jsonObject(keys.map((k) => [k, JSON.stringify(metadata[k])]))]);
  }
  let offset = 0;
  for (const it of items) {
    const range = [offset, offset + it.byteLength];
    header.push([it.name, JSON.stringify({ dtype: it.dtype, shape: it.shape, data_offsets: range })]);
    offset += it.byteLength;
  }
  let json = jsonObject(header);
  let jsonBytes = new TextEncoder().encode(json);
  if (jsonBytes.length % 8 !== 0) {
    json += " ".repeat(8 - (jsonBytes.length % 8));
    jsonBytes = new TextEncoder().encode(json);
  }
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  await withAtomicFile(path, async (file) => {
    await writeAll(file, len);
    await writeAll(file, jsonBytes);
    for (const it of items) {
      await writeAll(
        file,
        tensorBytes(path, it.name, { dtype: it.dtype, shape: it.shape, data: await it.data() }),
      );
      it.written?.();
    }
  });
}

/** Rank of each dtype in the reference library's ordering (ascending alignment). */
const DTYPE_ORDER: Record<Dtype, number> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  I16: 5,
  F16: 7,
  BF16: 8,
  I32: 9,
  F32: 11,
  F64: 12,
  I64: 13,
};

/** A JSON object of `[key, JSON value]` entries, in their order. */
function jsonObject(entries: readonly [string, string][]): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
}

/** Order strings by Unicode code point, i.e. by their UTF-8 bytes (as Rust's `str` order). */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator](), ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next(), y = ib.next();
    if (x.done || y.done) return (x.done ? 0 : 1) - (y.done ? 0 : 1);
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/** A tensor's stored bytes, after checking its dtype, shape and data (floats converted). */
function tensorBytes(path: string, name: string, t: TensorData): Uint8Array {
  if (!isDtype(t.dtype)) {
    fail(path, `tensor "${name}": unknown dtype ${JSON.stringify(t.dtype)} ${SUPPORTED}`);
  }
  const shape = checkShape(path, name, t.shape);
  const count = shape.reduce((a, b) => a * b, 1);
  let data = t.data;
  if ((data instanceof Float32Array || data instanceof Float64Array) && isFloat(t.dtype)) {
    data = fromFloat(t.dtype, data);
  }
  const want = count * DTYPES[t.dtype].size;
  if (data.byteLength !== want) {
    fail(
      path,
      `tensor "${name}": shape [${shape}] of ${t.dtype} needs ${want} bytes, ` +
        `the data has ${data.byteLength} (${data.constructor.name} of length ${data.length})`,
    );
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function isFloat(d: Dtype): d is "F64" | "F32" | "F16" | "BF16" {
  return d === "F64" || d === "F32" || d === "F16" || d === "BF16";
}
