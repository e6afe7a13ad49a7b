/**
 * Encoding of f32 matrix products `C = alpha·op(A)·op(B) (+ bias) (+ C)` on the stream, with
 * operands placed anywhere in their buffers (row strides, offsets, heads sharing a matrix) and
 * an optional activation epilogue: validates shapes and buffer sizes and dispatches the kernels
 * of `kernels/matmul.ts` with the tile and K split (or the GEMV) that lib/linalg/matmul_plan.ts
 * picks for the shape.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { grid } from "../gpu/buffers.ts";
import { bindingLimit } from "../gpu/bands.ts";
import type { Binding } from "../gpu/stream.ts";
import {
  matmulKernel,
  matmulReduceKernel,
  type MatmulVariant,
  tileName,
  tileSharedBytes,
  tileThreads,
} from "../../kernels/matmul.ts";
import { groupWords } from "../../kernels/quant.ts";
import { gemvGroups, gemvKernel } from "../../kernels/gemv.ts";
import { QUANT_GROUP, type QuantKind } from "../tensor/quant_format.ts";
import {
  MATMUL_HEURISTICS,
  type MatmulOptions,
  type MatrixLayout,
  planMatmul,
  usesGemv,
} from "./matmul_plan.ts";

export type { EpilogueActivation, MatmulTile } from "../../kernels/matmul.ts";

/** A {@link MatrixLayout} with its defaults filled in. */
interface Placement {
  ld: number;
  offset: number;
  batchStride: number;
  headStride: number;
  headGroup: number;
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new Error(`encodeMatmul: ${name} must be a positive integer, got ${v}`);
  }
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

/** Elements from the buffer's start to one past the last element a placement reaches. */
function extent(p: Placement, outer: number, heads: number, rows: number, cols: number): number {
  return p.offset + (outer - 1) * p.batchStride + Math.floor((heads - 1) / p.headGroup) * p.headStride +
    (rows - 1) * p.ld + cols;
}

/** Every element offset of a placement is a multiple of 4 (vec4 access). */
function aligned4(p: Placement): boolean {
  return p.ld % 4 === 0 && p.offset % 4 === 0 && p.batchStride % 4 === 0 && p.headStride % 4 === 0;
}

/** An operand's binding, and the elements its binding starts after the buffer's first. */
interface Window {
  binding: Binding;
  shift: number;
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
 * A product of one matrix (no batch) whose A, B or C is over one storage binding (an LM head's
 * logits [tokens, vocab]; a large vocabulary's head weight; a large layer's f32 weight on a
 * device whose bindings stop at 128 MiB) as products over bands: of C's rows (m) when C is
 * over, else along the dimension in which the operand that is over is stored row by row: m for
 * A, n for a transposed B, k for a transposed A or a plain B (accumulating into C). A band that
 * leaves another operand over is cut again the same way; B may be f16 or quantized, and a bias
 * is bound from each band's first column. Returns false when no operand is over the limit;
 * throws for a batch, a broadcast B or an epilogue activation, and when one row is over.
 */
function encodeBands(
  gpu: Gpu,
  a: GPUBuffer,
  b: GPUBuffer,
  c: GPUBuffer,
  m: number,
  n: number,
  k: number,
  opts: MatmulOptions,
  [la, lb, lc]: readonly Placement[],
): boolean {
  const limit = bindingLimit(gpu);
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const quant = opts.quantB?.kind;
  const bytesB = quant === "q8" ? 1 : quant === "q4" ? 0.5 : opts.f16B ? 2 : 4;
  const [rowsA, colsA] = transA ? [k, m] : [m, k];
  const [rowsB, colsB] = transB ? [n, k] : [k, n];
  const span = (p: Placement, rows: number, cols: number, bytes: number) =>
    ((rows - 1) * p.ld + cols) * bytes;
  const over = (buffer: GPUBuffer, bytes: number) => buffer.size > limit && bytes > limit;
  const overA = over(a, span(la, rowsA, colsA, 4));
  const overB = over(b, span(lb, rowsB, colsB, bytesB)) ||
    (!!opts.quantB && opts.quantB.scales.size > limit);
  const overC = over(c, span(lc, m, n, 4));
  if (!overA && !overB && !overC) return false;
  if ((opts.batch ?? 1) !== 1 || opts.activation || opts.broadcastB) {
    throw new Error(
      `encodeMatmul: an operand of ${m}×${n}×${k} is over this device's largest storage binding (${limit} ` +
        "bytes) and cannot be cut into bands (one matrix, no epilogue activation)",
    );
  }
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  // a window starts up to one alignment (a quantized B's: 8·align elements) before its first element
  const room = limit - (quant ? 8 * align : align);
  // an operand moved `i` along the dimension it stores row by row (`rows`) or across its rows
  const at = (p: Placement, i: number, rows: boolean): MatrixLayout => ({
    ld: p.ld,
    offset: p.offset + (rows ? i * p.ld : i),
  });
  // bands of `count` whose rows (`rowBytes` each, for each operand stored that way) fit, in
  // multiples of `multiple`
  const bands = (count: number, rowBytes: number[], what: string, multiple = 1): [number, number][] => {
    const per = Math.floor(room / Math.max(...rowBytes) / multiple) * multiple;
    if (per < 1) {
      const unit = multiple > 1
        ? `${multiple} of its rows (a bias binds from aligned columns) are`
        : "one of its rows is";
      throw new Error(
        `encodeMatmul: ${what} cannot be cut into bands: ${unit} over this device's largest storage binding ` +
          `(${limit} bytes)`,
      );
    }
    return Array.from(
      { length: Math.ceil(count / per) },
      (_, i) => [i * per, Math.min(per, count - i * per)],
    );
  };
  if (overC || (overA && !transA)) {
    const rowBytes = [lc.ld * 4, ...(transA ? [] : [la.ld * 4])];
    for (const [r0, rows] of bands(m, rowBytes, overC ? `C (${m}×${n})` : `A (${m}×${k})`)) {
      encodeMatmul(gpu, a, b, c, rows, n, k, {
        ...opts,
        layoutA: at(la, r0, !transA),
        layoutC: at(lc, r0, true),
      });
    }
  } else if (overB && transB) {
    // the bias row is bound from each band's first column: bands of whole alignments
    const multiple = opts.bias ? Math.max(1, align / 4) : 1;
    for (const [c0, cols] of bands(n, [lb.ld * bytesB], `B (${n}×${k})`, multiple)) {
      encodeMatmul(gpu, a, b, c, m, cols, k, {
        ...opts,
        layoutB: at(lb, c0, true),
        layoutC: at(lc, c0, false),
        ...(opts.bias ? { biasOffset: (opts.biasOffset ?? 0) + c0 } : {}),
      });
    }
  } else {
    // A transposed or B plain is over: bands of k, each adding its share to C
    const rowBytes = [...(transA ? [la.ld * 4] : []), ...(transB ? [] : [lb.ld * bytesB])];
    for (const [k0, depth] of bands(k, rowBytes, overA ? `A (${k}×${m})` : `B (${k}×${n})`)) {
      encodeMatmul(gpu, a, b, c, m, n, depth, {
        ...opts,
        layoutA: at(la, k0, transA),
        layoutB: at(lb, k0, !transB),
        accumulate: (opts.accumulate ?? false) || k0 > 0,
        ...(k0 > 0 ? { bias: undefined } : {}),
      });
    }
  }
  return true;
}

/**
 * Encode `C = alpha·op(A)·op(B) (+ bias) (+ C)` with C (m, n) row-major f32 (per batch entry).
 * A is (m, k) or, with `transA`, (k, m); B is (k, n) or, with `transB`, (n, k); all row-major.
 * Nothing is submitted. Throws, naming the operand and the expected size, on non-positive
 * sizes, buffers too small for the shape and placement, a placement with negative fields or
 * overlapping rows, C sharing a buffer with an input (or its heads a matrix), a strided C with a
 * K split, an activation with a strided C, a K split or `accumulate` (or backward without `pre`),
 * `f16B` on a device without f16, or a quantized B whose rows or placement are not multiples of 4.
 * One matrix (no batch) whose A, B or C is over one storage binding runs in bands of rows,
 * columns or depth (see `encodeBands`); a batch, a broadcast B or an epilogue activation that
 * large throws.
 */
export function encodeMatmul(
  gpu: Gpu,
  a: GPUBuffer,
  b: GPUBuffer,
  c: GPUBuffer,
  m: number,
  n: number,
  k: number,
  opts: MatmulOptions = {},
): void {
  const batch = opts.batch ?? 1;
  positiveInt("m", m);
  positiveInt("n", n);
  positiveInt("k", k);
  positiveInt("batch", batch);
  const transA = opts.transA ?? false, transB = opts.transB ?? false, f16B = opts.f16B ?? false;
  const quant = opts.quantB;
  if (quant && f16B) throw new Error("encodeMatmul: B is either f16 or quantized, not both");
  if (f16B && !gpu.f16) {
    throw new Error(
      "encodeMatmul: f16B needs the 'shader-f16' feature, which this device lacks; store B as f32",
    );
  }
  if (c === a || c === b || c === opts.bias) {
    throw new Error("encodeMatmul: C must not share a buffer with A, B or bias");
  }
  const heads = opts.heads ?? 1;
  positiveInt("heads", heads);
  if (batch % heads !== 0) {
    throw new Error(`encodeMatmul: batch (${batch}) must be a multiple of heads (${heads})`);
  }
  const outer = batch / heads;
  const [rowsA, colsA] = transA ? [k, m] : [m, k];
  const [rowsB, colsB] = transB ? [n, k] : [k, n];
  const la = place("A", opts.layoutA, rowsA, colsA, m * k, heads);
  const lb = place("B", opts.layoutB, rowsB, colsB, opts.broadcastB ? 0 : k * n, heads);
  const lc = place("C", opts.layoutC, m, n, m * n, heads);
  const custom = opts.layoutC !== undefined;
  const shapeA = `${rowsA}×${colsA}`;
  const shapeB = `${rowsB}×${colsB}`;
  if (outer * heads === 1 && encodeBands(gpu, a, b, c, m, n, k, opts, [la, lb, lc])) return;
  const maxZ = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (batch > maxZ && heads <= maxZ) {
    // more matrices than a dispatch's z reaches (attention over many short rows): runs of whole
    // outer entries, each placed where it starts
    const step = Math.floor(maxZ / heads);
    const from = (l: Placement, o0: number): MatrixLayout => ({
      ...l,
      offset: l.offset + o0 * l.batchStride,
    });
    for (let o0 = 0; o0 < outer; o0 += step) {
      encodeMatmul(gpu, a, b, c, m, n, k, {
        ...opts,
        batch: Math.min(step, outer - o0) * heads,
        layoutA: from(la, o0),
        layoutB: from(lb, o0),
        layoutC: from(lc, o0),
      });
    }
    return;
  }
  const A = window(
    gpu,
    a,
    la.offset,
    extent(la, outer, heads, rowsA, colsA),
    4,
    `A (${batch} × ${shapeA} f32)`,
  );
  const extentB = extent(lb, outer, heads, rowsB, colsB);
  const typeB = quant?.kind ?? (f16B ? "f16" : "f32");
  const whatB = `B (${opts.broadcastB ? 1 : batch} × ${shapeB} ${typeB})`;
  const quantB = quant ? quantWindow(gpu, b, quant, lb.offset, extentB, whatB) : undefined;
  const B = quantB ?? window(gpu, b, lb.offset, extentB, f16B ? 2 : 4, whatB);
  const scalesB = quantB?.scales;
  if (quant && !(colsB % 4 === 0 && aligned4(lb))) {
    throw new Error(
      `encodeMatmul: a ${quant.kind} B is read 4 values at a time: its stored rows (${colsB}) and its ` +
        `placement must be multiples of 4`,
    );
  }
  const C = window(gpu, c, lc.offset, extent(lc, outer, heads, m, n), 4, `C (${batch} × ${m}×${n} f32)`);
  const bias = opts.bias ? biasBinding(gpu, opts.bias, opts.biasOffset ?? 0, n) : undefined;
  if (lc.headGroup > 1) {
    throw new Error("encodeMatmul: C's heads cannot share a matrix (layoutC.headGroup must be 1)");
  }
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
  const preBuffer = act?.pre;
  const pre = preBuffer
    ? window(gpu, preBuffer, 0, batch * m * n, 4, `pre-activation (${batch} × ${m}×${n} f32)`).binding
    : undefined;

  const alpha = opts.alpha ?? 1;
  const accumulate = opts.accumulate ?? false;
  if (usesGemv(m, n, k, opts, gpu.limits.maxComputeWorkgroupStorageSize)) {
    const kernel = gemvKernel({
      rows: m,
      b: quant?.kind ?? (f16B ? "f16" : "f32"),
      transB,
      bias: !!bias,
      accumulate,
      ...(act ? { activation: { kind: act.kind, keepPre: !!pre } } : {}),
    });
    const params = new Uint32Array([n, k, 0, 0]);
    new Float32Array(params.buffer)[2] = alpha;
    const bindings = [
      A.binding,
      B.binding,
      C.binding,
      ...(bias ? [bias] : []),
      ...(pre ? [pre] : []),
      ...(scalesB ? [scalesB] : []),
    ];
    gpu.stream.dispatch(kernel, bindings, grid(gpu, gemvGroups(transB, n)), params);
    return;
  }
  const plan = planMatmul(gpu, m, n, k, custom || act ? { ...opts, splitK: 1 } : opts);
  const { tile, splits, kChunk } = plan;
  const limits = gpu.limits;
  const threads = tileThreads(tile);
  const shared = tileSharedBytes(tile, transA, transB);
  if (threads > limits.maxComputeInvocationsPerWorkgroup || shared > limits.maxComputeWorkgroupStorageSize) {
    throw new Error(
      `encodeMatmul: tile ${tileName(tile)} needs ${threads} invocations and ${shared} bytes of workgroup ` +
        `memory; this device allows ${limits.maxComputeInvocationsPerWorkgroup} and ` +
        `${limits.maxComputeWorkgroupStorageSize}`,
    );
  }
  const z = batch * splits;
  if (z > limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(
      `encodeMatmul: batch × splitK = ${batch} × ${splits} exceeds ${limits.maxComputeWorkgroupsPerDimension}`,
    );
  }
  const partial = splits > 1;
  const variant: MatmulVariant = {
    tile,
    transA,
    transB,
    vecA: colsA % 4 === 0 && aligned4(la),
    vecB: colsB % 4 === 0 && aligned4(lb),
    vecC: n % 4 === 0 && aligned4(lc) && Math.min(4, tile.tn) === 4,
    f16B,
    f16Packed: f16B &&
      (MATMUL_HEURISTICS.f16Loads === "auto" ? !transB : MATMUL_HEURISTICS.f16Loads === "packed"),
    ...(quant ? { quantB: quant.kind } : {}),
    bias: !!bias && !partial,
    accumulate: accumulate && !partial,
    partial,
    ...(act
      ? {
        activation: { kind: act.kind, backward: act.backward ?? false, keepPre: !act.backward && !!act.pre },
      }
      : {}),
  };
  const tilesM = Math.ceil(m / tile.bm), tilesN = Math.ceil(n / tile.bn);
  // split-K partials are packed: slice z of the scratch buffer holds entry z / splits, chunk z % splits
  const pc = partial
    ? { ...lc, ld: n, offset: 0, batchStride: m * n }
    : { ...lc, offset: lc.offset - C.shift };
  const params = new Uint32Array([
    m,
    n,
    k,
    tilesN,
    tilesM,
    tilesM * tilesN,
    splits,
    kChunk,
    la.ld,
    lb.ld,
    pc.ld,
    0,
    heads,
    0,
    0,
    0,
    ...[{ ...la, offset: la.offset - A.shift }, { ...lb, offset: lb.offset - B.shift }, pc]
      .flatMap((l) => [l.offset, l.batchStride, l.headStride, l.headGroup]),
  ]);
  new Float32Array(params.buffer)[11] = alpha;
  const [gx, gy] = grid(gpu, tilesM * tilesN);
  const kernel = matmulKernel(variant);
  if (!partial) {
    const bindings = [
      A.binding,
      B.binding,
      C.binding,
      ...(bias ? [bias] : []),
      ...(pre ? [pre] : []),
      ...(scalesB ? [scalesB] : []),
    ];
    gpu.stream.dispatch(kernel, bindings, [gx, gy, z], params);
    return;
  }
  const scratchBytes = z * m * n * 4;
  const scratch = gpu.pool.acquire(scratchBytes, undefined, "matmul.splitK");
  const partialBindings = [
    A.binding,
    B.binding,
    { buffer: scratch, size: scratchBytes },
    ...(scalesB ? [scalesB] : []),
  ];
  gpu.stream.dispatch(kernel, partialBindings, [gx, gy, z], params);
  const vec = n % 4 === 0;
  const unit = vec ? 4 : 1;
  const total = (batch * m * n) / unit;
  const reduceParams = new Uint32Array([total, (m * n) / unit, n / unit, splits, 0, 0, 0, 0]);
  new Float32Array(reduceParams.buffer)[4] = alpha;
  const reduce = matmulReduceKernel(vec, !!bias, accumulate);
  const inputs = [{ buffer: scratch, size: scratchBytes }, C.binding];
  gpu.stream.dispatch(
    reduce,
    bias ? [...inputs, bias] : inputs,
    grid(gpu, Math.ceil(total / 256)),
    reduceParams,
  );
  gpu.pool.release(scratch);
}
