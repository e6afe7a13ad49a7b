/**
 * The operands of the matrix products that lib/linalg/matmul.ts encodes: a product's checked
 * sizes, where each operand's matrices lie in its buffer (a {@link MatrixLayout} with its
 * defaults filled in), and the bindings that reach them — whole buffers where one binding holds
 * them, else aligned windows — after checking every buffer's size and what C and the epilogue
 * activation allow.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { bindingLimit } from "../gpu/bands.ts";
import type { Binding } from "../gpu/stream.ts";
import { groupWords } from "../../kernels/quant.ts";
import { QUANT_GROUP, type QuantKind } from "../tensor/quant_format.ts";
import type { MatmulOptions, MatrixLayout } from "./matmul_plan.ts";

/** A product's sizes and storage, after `encodeMatmul` checked them. */
export interface Product {
  m: number;
  n: number;
  k: number;
  batch: number;
  heads: number;
  /** Outer batch entries: `batch / heads`. */
  outer: number;
  transA: boolean;
  transB: boolean;
  f16B: boolean;
  /** A's matrices as stored: (m, k), or (k, m) with `transA`. */
  rowsA: number;
  colsA: number;
  /** B's matrices as stored: (k, n), or (n, k) with `transB`. */
  rowsB: number;
  colsB: number;
}

/** A {@link MatrixLayout} with its defaults filled in. */
export interface Placement {
  ld: number;
  offset: number;
  batchStride: number;
  headStride: number;
  headGroup: number;
}

/** The placements of A, B and C. */
export type Placements = readonly [a: Placement, b: Placement, c: Placement];

/** An operand's binding, and the elements its binding starts after the buffer's first. */
export interface Window {
  binding: Binding;
  shift: number;
}

/** The bindings of a product's operands; the optional ones only where the product has them. */
export interface Operands {
  A: Window;
  B: Window;
  /** A quantized B's group scales. */
  scalesB?: Binding;
  C: Window;
  bias?: Binding;
  /** An epilogue activation's pre-activation. */
  pre?: Binding;
}

/**
 * `layout` with its defaults (matrices of `packed` elements back to back) for matrices of
 * `rows` stored rows of `cols`, after checking that every field is a non-negative integer and
 * that rows do not overlap.
 */
function place(
  what: string,
  layout: MatrixLayout | undefined,
  rows: number,
  cols: number,
  packed: number,
  heads: number,
): Placement {
  const p: Placement = {
    ld: layout?.ld ?? cols,
    offset: layout?.offset ?? 0,
    batchStride: layout?.batchStride ?? heads * packed,
    headStride: layout?.headStride ?? packed,
    headGroup: layout?.headGroup ?? 1,
  };
  for (const [key, value] of Object.entries(p)) {
    const least = key === "headGroup" ? 1 : 0;
    if (!Number.isInteger(value) || value < least) {
      throw new Error(`encodeMatmul: ${what}'s ${key} must be an integer ≥ ${least}, got ${value}`);
    }
  }
  if (rows > 1 && p.ld < cols) {
    throw new Error(`encodeMatmul: ${what}'s ld (${p.ld}) is below its stored row length ${cols}`);
  }
  return p;
}

/** The placements of the product's A, B and C from their layouts in `opts`. */
export function placeOperands(p: Product, opts: MatmulOptions): Placements {
  return [
    place("A", opts.layoutA, p.rowsA, p.colsA, p.m * p.k, p.heads),
    place("B", opts.layoutB, p.rowsB, p.colsB, opts.broadcastB ? 0 : p.k * p.n, p.heads),
    place("C", opts.layoutC, p.m, p.n, p.m * p.n, p.heads),
  ];
}

/** Elements from the buffer's start to one past the last element a placement reaches. */
function extent(p: Placement, outer: number, heads: number, rows: number, cols: number): number {
  return p.offset + (outer - 1) * p.batchStride + Math.floor((heads - 1) / p.headGroup) * p.headStride +
    (rows - 1) * p.ld + cols;
}

/** Every element offset of a placement is a multiple of 4 (vec4 access). */
export function aligned4(p: Placement): boolean {
  return p.ld % 4 === 0 && p.offset % 4 === 0 && p.batchStride % 4 === 0 && p.headStride % 4 === 0;
}

/**
 * The binding of `buffer` for an operand that reads or writes its elements [`first`, `end`) of
 * `elementBytes` each, after checking its size: the whole buffer where one binding may hold it,
 * so that products over a growing extent (decoding's keys and values) keep their bind group;
 * else a window from the aligned offset at or before `first` (`shift` elements in).
 */
function window(
  gpu: Gpu,
  buffer: GPUBuffer,
  first: number,
  end: number,
  elementBytes: number,
  what: string,
): Window {
  const size = Math.ceil((end * elementBytes) / 4) * 4;
  if (buffer.size < size) {
    const label = gpu.pool.labelOf(buffer);
    const name = label ? ` '${label}'` : "";
    throw new Error(`encodeMatmul: ${what} needs ${size} bytes but its buffer${name} has ${buffer.size}`);
  }
  if (buffer.size <= bindingLimit(gpu)) {
    return { binding: buffer, shift: 0 };
  }
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const start = Math.floor((first * elementBytes) / align) * align;
  return { binding: { buffer, offset: start, size: size - start }, shift: start / elementBytes };
}

/**
 * The bindings of a quantized B that reads elements [`first`, `end`): its codes and scales whole
 * where one binding holds each, else windows from the group at or before `first` whose codes and
 * scales both start at offsets the device can bind (`shift` elements in; whole groups, as the
 * kernel counts groups from its binding's start).
 */
function quantWindow(
  gpu: Gpu,
  codes: GPUBuffer,
  quant: { kind: QuantKind; scales: GPUBuffer },
  first: number,
  end: number,
  what: string,
): Window & { scales: Binding } {
  const groupsEnd = Math.ceil(end / QUANT_GROUP);
  const words = groupWords(quant.kind);
  const limit = bindingLimit(gpu);
  const need = groupsEnd * words * 4;
  if (codes.size < need) {
    throw new Error(`encodeMatmul: ${what} needs ${need} bytes of codes but its buffer has ${codes.size}`);
  }
  if (quant.scales.size < 4 * groupsEnd) {
    throw new Error(
      `encodeMatmul: ${what}'s scales need ${4 * groupsEnd} bytes but their buffer has ${quant.scales.size}`,
    );
  }
  if (codes.size <= limit && quant.scales.size <= limit) {
    return { binding: codes, shift: 0, scales: quant.scales };
  }
  // a start every 8·align elements puts both windows on aligned offsets (scales: 4 bytes a group of 32)
  const step = 8 * gpu.limits.minStorageBufferOffsetAlignment;
  const start = Math.floor(first / step) * step;
  const g0 = start / QUANT_GROUP;
  const codeBytes = (groupsEnd - g0) * words * 4;
  if (codeBytes > limit) {
    throw new Error(
      `encodeMatmul: ${what} spans ${codeBytes} bytes of codes, over one storage binding (${limit})`,
    );
  }
  return {
    binding: { buffer: codes, offset: g0 * words * 4, size: codeBytes },
    shift: start,
    scales: { buffer: quant.scales, offset: g0 * 4, size: (groupsEnd - g0) * 4 },
  };
}

/** The bias row bound from element `offset` (aligned), `n` of it. */
function biasBinding(gpu: Gpu, bias: GPUBuffer, offset: number, n: number): Binding {
  const bytes = 4 * (offset + n);
  if (bias.size < bytes) {
    throw new Error(`encodeMatmul: bias (${n} f32) needs ${bytes} bytes but its buffer has ${bias.size}`);
  }
  if (offset === 0) return window(gpu, bias, 0, n, 4, `bias (${n} f32)`).binding;
  if ((4 * offset) % gpu.limits.minStorageBufferOffsetAlignment !== 0) {
    throw new Error(`encodeMatmul: biasOffset ${offset} is not at a bindable offset`);
  }
  return { buffer: bias, offset: 4 * offset, size: 4 * n };
}

/**
 * The bindings of A and B (with a quantized B's scales), after checking that their buffers hold
 * what the placements reach and that a quantized B can be read 4 values at a time.
 */
export function bindInputs(
  gpu: Gpu,
  a: GPUBuffer,
  b: GPUBuffer,
  p: Product,
  opts: MatmulOptions,
  [la, lb]: Placements,
): Pick<Operands, "A" | "B" | "scalesB"> {
  const A = window(
    gpu,
    a,
    la.offset,
    extent(la, p.outer, p.heads, p.rowsA, p.colsA),
    4,
    `A (${p.batch} × ${p.rowsA}×${p.colsA} f32)`,
  );
  const quant = opts.quantB;
  const extentB = extent(lb, p.outer, p.heads, p.rowsB, p.colsB);
  const typeB = quant?.kind ?? (p.f16B ? "f16" : "f32");
  const whatB = `B (${opts.broadcastB ? 1 : p.batch} × ${p.rowsB}×${p.colsB} ${typeB})`;
  const quantB = quant ? quantWindow(gpu, b, quant, lb.offset, extentB, whatB) : undefined;
  const B = quantB ?? window(gpu, b, lb.offset, extentB, p.f16B ? 2 : 4, whatB);
  if (quant && !(p.colsB % 4 === 0 && aligned4(lb))) {
    throw new Error(
      `encodeMatmul: a ${quant.kind} B is read 4 values at a time: its stored rows (${p.colsB}) and its ` +
        `placement must be multiples of 4`,
    );
  }
  return { A, B, scalesB: quantB?.scales };
}

/**
 * The bindings of what the epilogue writes and reads: C, the bias and an activation's
 * pre-activation, after checking their buffers' sizes and that C's placement and the
 * activation allow the product's options (`a` and `b` are only compared with the pre-activation).
 */
export function bindEpilogue(
  gpu: Gpu,
  a: GPUBuffer,
  b: GPUBuffer,
  c: GPUBuffer,
  p: Product,
  opts: MatmulOptions,
  [, , lc]: Placements,
): Pick<Operands, "C" | "bias" | "pre"> {
  const { batch, m, n } = p;
  const C = window(gpu, c, lc.offset, extent(lc, p.outer, p.heads, m, n), 4, `C (${batch} × ${m}×${n} f32)`);
  const bias = opts.bias ? biasBinding(gpu, opts.bias, opts.biasOffset ?? 0, n) : undefined;
  if (lc.headGroup > 1) {
    throw new Error("encodeMatmul: C's heads cannot share a matrix (layoutC.headGroup must be 1)");
  }
  const custom = opts.layoutC !== undefined;
  if (custom && (opts.splitK ?? 1) > 1) {
    throw new Error("encodeMatmul: a strided C (layoutC) cannot be split along K");
  }
  const act = opts.activation;
  if (act && (custom || opts.accumulate || (opts.splitK ?? 1) > 1)) {
    throw new Error("encodeMatmul: an epilogue activation needs a packed C, no accumulate and no K split");
  }
  if (act?.backward && !act.pre) throw new Error("encodeMatmul: a backward activation needs `pre`");
  if (act?.pre && (act.pre === c || act.pre === a || act.pre === b)) {
    throw new Error("encodeMatmul: the pre-activation buffer must not be A, B or C");
  }
  const pre = act?.pre
    ? window(gpu, act.pre, 0, batch * m * n, 4, `pre-activation (${batch} × ${m}×${n} f32)`).binding
    : undefined;
  return { C, bias, pre };
}

/** The bindings of a GEMV or a tile kernel that writes C: A, B, C, then those the product has. */
export function operandBindings(ops: Operands): Binding[] {
  return [
    ops.A.binding,
    ops.B.binding,
    ops.C.binding,
    ...(ops.bias ? [ops.bias] : []),
    ...(ops.pre ? [ops.pre] : []),
    ...(ops.scalesB ? [ops.scalesB] : []),
  ];
}
