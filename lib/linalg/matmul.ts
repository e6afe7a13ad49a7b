/**
 * Encoding of f32 matrix products `C = alpha·op(A)·op(B) (+ bias) (+ C)` on the stream, with
 * operands placed anywhere in their buffers (row strides, offsets, heads sharing a matrix) and
 * an optional activation epilogue: checks the shapes, binds the operands (placed, sized and
 * windowed by lib/linalg/matmul_operands.ts) and dispatches the kernels of `kernels/matmul.ts`
 * with the tile and K split (or the GEMV) that lib/linalg/matmul_plan.ts picks for the shape.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { grid } from "../gpu/buffers.ts";
import { bindingLimit } from "../gpu/bands.ts";
import type { Binding } from "../gpu/stream.ts";
import {
  matmulKernel,
  matmulReduceKernel,
  type MatmulTile,
  type MatmulVariant,
  tileName,
  tileSharedBytes,
  tileThreads,
} from "../../kernels/matmul.ts";
import { gemvGroups, gemvKernel } from "../../kernels/gemv.ts";
import { QUANT_GROUP } from "../tensor/quant_format.ts";
import {
  MATMUL_HEURISTICS,
  type MatmulOptions,
  type MatmulPlan,
  type MatrixLayout,
  planMatmul,
  usesGemv,
} from "./matmul_plan.ts";
import {
  aligned4,
  bindEpilogue,
  bindInputs,
  operandBindings,
  type Operands,
  type Placement,
  type Placements,
  placeOperands,
  type Product,
} from "./matmul_operands.ts";

export type { EpilogueActivation, MatmulTile } from "../../kernels/matmul.ts";

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new Error(`encodeMatmul: ${name} must be a positive integer, got ${v}`);
  }
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
  [la, lb, lc]: Placements,
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
  // a quantized B's scales (4 bytes a group of 32) are windowed with its codes, by the span read
  const overB = over(b, span(lb, rowsB, colsB, bytesB)) ||
    (!!opts.quantB && over(opts.quantB.scales, Math.ceil(span(lb, rowsB, colsB, 1) / QUANT_GROUP) * 4));
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
 * The product's sizes and storage, after the checks that need neither placements nor buffer
 * sizes: positive sizes, a consistent B storage, C apart from its inputs, heads that divide the
 * batch.
 */
function checkProduct(
  gpu: Gpu,
  a: GPUBuffer,
  b: GPUBuffer,
  c: GPUBuffer,
  m: number,
  n: number,
  k: number,
  opts: MatmulOptions,
): Product {
  const batch = opts.batch ?? 1;
  positiveInt("m", m);
  positiveInt("n", n);
  positiveInt("k", k);
  positiveInt("batch", batch);
  const transA = opts.transA ?? false, transB = opts.transB ?? false, f16B = opts.f16B ?? false;
  if (opts.quantB && f16B) throw new Error("encodeMatmul: B is either f16 or quantized, not both");
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
  const [rowsA, colsA] = transA ? [k, m] : [m, k];
  const [rowsB, colsB] = transB ? [n, k] : [k, n];
  return { m, n, k, batch, heads, outer: batch / heads, transA, transB, f16B, rowsA, colsA, rowsB, colsB };
}

/**
 * More matrices than a dispatch's z reaches (attention over many short rows): runs of whole
 * outer entries, each placed where it starts.
 */
function encodeRuns(
  gpu: Gpu,
  a: GPUBuffer,
  b: GPUBuffer,
  c: GPUBuffer,
  p: Product,
  opts: MatmulOptions,
  [la, lb, lc]: Placements,
): void {
  const step = Math.floor(gpu.limits.maxComputeWorkgroupsPerDimension / p.heads);
  const from = (l: Placement, o0: number): MatrixLayout => ({
    ...l,
    offset: l.offset + o0 * l.batchStride,
  });
  for (let o0 = 0; o0 < p.outer; o0 += step) {
    encodeMatmul(gpu, a, b, c, p.m, p.n, p.k, {
      ...opts,
      batch: Math.min(step, p.outer - o0) * p.heads,
      layoutA: from(la, o0),
      layoutB: from(lb, o0),
      layoutC: from(lc, o0),
    });
  }
}

/** The product as one GEMV dispatch (kernels/gemv.ts). */
function encodeGemv(gpu: Gpu, p: Product, opts: MatmulOptions, ops: Operands): void {
  const act = opts.activation;
  const kernel = gemvKernel({
    rows: p.m,
    b: opts.quantB?.kind ?? (p.f16B ? "f16" : "f32"),
    transB: p.transB,
    bias: !!ops.bias,
    accumulate: opts.accumulate ?? false,
    ...(act ? { activation: { kind: act.kind, keepPre: !!ops.pre } } : {}),
  });
  const params = new Uint32Array([p.n, p.k, 0, 0]);
  new Float32Array(params.buffer)[2] = opts.alpha ?? 1;
  gpu.stream.dispatch(kernel, operandBindings(ops), grid(gpu, gemvGroups(p.transB, p.n)), params);
}

/**
 * The tile and K split of the product (none for a strided C or an epilogue activation), after
 * checking that the device runs the tile and a dispatch's z reaches the batch's K chunks.
 */
function planTiles(gpu: Gpu, p: Product, opts: MatmulOptions): MatmulPlan {
  const noSplit = opts.layoutC !== undefined || !!opts.activation;
  const plan = planMatmul(gpu, p.m, p.n, p.k, noSplit ? { ...opts, splitK: 1 } : opts);
  const { tile, splits } = plan;
  const limits = gpu.limits;
  const threads = tileThreads(tile);
  const shared = tileSharedBytes(tile, p.transA, p.transB);
  if (threads > limits.maxComputeInvocationsPerWorkgroup || shared > limits.maxComputeWorkgroupStorageSize) {
    throw new Error(
      `encodeMatmul: tile ${tileName(tile)} needs ${threads} invocations and ${shared} bytes of workgroup ` +
        `memory; this device allows ${limits.maxComputeInvocationsPerWorkgroup} and ` +
        `${limits.maxComputeWorkgroupStorageSize}`,
    );
  }
  const z = p.batch * splits;
  if (z > limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(
      `encodeMatmul: batch × splitK = ${p.batch} × ${splits} exceeds ${limits.maxComputeWorkgroupsPerDimension}`,
    );
  }
  return plan;
}

/**
 * The tile kernel's variant: vec4 access where an operand's rows and placement allow it, and
 * with a K split (`partial`) no epilogue but the activation's, which never splits.
 */
function tileVariant(
  p: Product,
  opts: MatmulOptions,
  tile: MatmulTile,
  [la, lb, lc]: Placements,
  ops: Operands,
  partial: boolean,
): MatmulVariant {
  const act = opts.activation;
  return {
    tile,
    transA: p.transA,
    transB: p.transB,
    vecA: p.colsA % 4 === 0 && aligned4(la),
    vecB: p.colsB % 4 === 0 && aligned4(lb),
    vecC: p.n % 4 === 0 && aligned4(lc) && Math.min(4, tile.tn) === 4,
    f16B: p.f16B,
    f16Packed: p.f16B &&
      (MATMUL_HEURISTICS.f16Loads === "auto" ? !p.transB : MATMUL_HEURISTICS.f16Loads === "packed"),
    ...(opts.quantB ? { quantB: opts.quantB.kind } : {}),
    bias: !!ops.bias && !partial,
    accumulate: (opts.accumulate ?? false) && !partial,
    partial,
    ...(act
      ? {
        activation: { kind: act.kind, backward: act.backward ?? false, keepPre: !act.backward && !!act.pre },
      }
      : {}),
  };
}

/**
 * The tile kernel's uniform: the sizes, the tile grid (`tilesM` × `tilesN`), the K split, the
 * leading dimensions, alpha and heads, then each operand's offset (from its binding's start),
 * batch stride, head stride and head group.
 */
function tileParams(
  p: Product,
  opts: MatmulOptions,
  { splits, kChunk }: MatmulPlan,
  [tilesM, tilesN]: readonly [number, number],
  [la, lb, lc]: Placements,
  ops: Operands,
): Uint32Array {
  const { m, n, k } = p;
  // split-K partials are packed: slice z of the scratch buffer holds entry z / splits, chunk z % splits
  const pc = splits > 1
    ? { ...lc, ld: n, offset: 0, batchStride: m * n }
    : { ...lc, offset: lc.offset - ops.C.shift };
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
    p.heads,
    0,
    0,
    0,
    ...[{ ...la, offset: la.offset - ops.A.shift }, { ...lb, offset: lb.offset - ops.B.shift }, pc]
      .flatMap((l) => [l.offset, l.batchStride, l.headStride, l.headGroup]),
  ]);
  new Float32Array(params.buffer)[11] = opts.alpha ?? 1;
  return params;
}

/**
 * The product on tiles: one dispatch of the tile kernel, or with a K split, the partial
 * products into a scratch buffer and a second pass that sums them into C with the epilogue.
 */
function encodeTiles(gpu: Gpu, p: Product, opts: MatmulOptions, places: Placements, ops: Operands): void {
  const plan = planTiles(gpu, p, opts);
  const { tile, splits } = plan;
  const partial = splits > 1;
  const variant = tileVariant(p, opts, tile, places, ops, partial);
  const tiles = [Math.ceil(p.m / tile.bm), Math.ceil(p.n / tile.bn)] as const;
  const params = tileParams(p, opts, plan, tiles, places, ops);
  const [gx, gy] = grid(gpu, tiles[0] * tiles[1]);
  const z = p.batch * splits;
  const kernel = matmulKernel(variant);
  if (!partial) {
    gpu.stream.dispatch(kernel, operandBindings(ops), [gx, gy, z], params);
    return;
  }
  const scratchBytes = z * p.m * p.n * 4;
  const scratch = gpu.pool.acquire(scratchBytes, undefined, "matmul.splitK");
  const partials = { buffer: scratch, size: scratchBytes };
  const partialBindings = [ops.A.binding, ops.B.binding, partials, ...(ops.scalesB ? [ops.scalesB] : [])];
  gpu.stream.dispatch(kernel, partialBindings, [gx, gy, z], params);
  encodeReduce(gpu, p, opts, splits, partials, ops);
  gpu.pool.release(scratch);
}

/** The split-K second pass: C = alpha·Σ partials (+ bias) (+ C), 4 columns a thread where n allows. */
function encodeReduce(
  gpu: Gpu,
  p: Product,
  opts: MatmulOptions,
  splits: number,
  partials: Binding,
  ops: Operands,
): void {
  const { batch, m, n } = p;
  const vec = n % 4 === 0;
  const unit = vec ? 4 : 1;
  const total = (batch * m * n) / unit;
  const reduceParams = new Uint32Array([total, (m * n) / unit, n / unit, splits, 0, 0, 0, 0]);
  new Float32Array(reduceParams.buffer)[4] = opts.alpha ?? 1;
  const reduce = matmulReduceKernel(vec, !!ops.bias, opts.accumulate ?? false);
  const inputs = [partials, ops.C.binding];
  gpu.stream.dispatch(
    reduce,
    ops.bias ? [...inputs, ops.bias] : inputs,
    grid(gpu, Math.ceil(total / 256)),
    reduceParams,
  );
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
  const p = checkProduct(gpu, a, b, c, m, n, k, opts);
  const places = placeOperands(p, opts);
  if (p.batch === 1 && encodeBands(gpu, a, b, c, m, n, k, opts, places)) return;
  const maxZ = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (p.batch > maxZ && p.heads <= maxZ) {
    encodeRuns(gpu, a, b, c, p, opts, places);
    return;
  }
  const ops: Operands = {
    ...bindInputs(gpu, a, b, p, opts, places),
    ...bindEpilogue(gpu, a, b, c, p, opts, places),
  };
  if (usesGemv(m, n, k, opts, gpu.limits.maxComputeWorkgroupStorageSize)) encodeGemv(gpu, p, opts, ops);
  else encodeTiles(gpu, p, opts, places, ops);
}
