/**
 * Embedding lookup with a deterministic scatter-add gradient (see kernels/embedding.ts). One
 * workgroup sums the gradient rows of one id; an id seen more than {@link MAX_RUN} times (a
 * token-type or position table: one id in every row of the batch) is split into runs summed
 * by separate workgroups, then the runs are summed per id by the same kernel. One workgroup
 * alone over 4096 rows was 11 ms of a RoBERTa-base full fine-tuning step on the H100.
 * @module
 */
import {
  embeddingBackwardKernel,
  embeddingKernel,
  quantEmbeddingKernel,
} from "../../../kernels/embedding.ts";
import { type Binding, grid } from "../../gpu/mod.ts";
import { bandBinding, type RowBand, rowBands, rowWindow } from "../../gpu/bands.ts";
import { record } from "../autograd.ts";
import { QUANT_GROUP, type QuantKind } from "../quant_format.ts";
import { isQuantized, Tensor } from "../tensor.ts";
import { launch, u32s } from "./util.ts";

/**
 * The CSR grouping of `ids` behind the gradient: distinct ids ascending (skipping
 * `skip`), then U+1 offsets, then the positions of each id in ascending order.
 */
export function groupIds(ids: Int32Array, skip?: number): { csr: Uint32Array; distinct: number } {
  const order = Array.from(ids.keys()).filter((i) => ids[i] !== skip);
  order.sort((a, b) => ids[a] - ids[b] || a - b);
  const rows: number[] = [], offsets: number[] = [];
  order.forEach((pos, q) => {
    if (q === 0 || ids[pos] !== ids[order[q - 1]]) {
      rows.push(ids[pos]);
      offsets.push(q);
    }
  });
  offsets.push(order.length);
  return { csr: Uint32Array.from([...rows, ...offsets, ...order]), distinct: rows.length };
}

/** The most occurrences of one id that one workgroup sums. */
export const MAX_RUN = 64;

/**
 * `groupIds`'s grouping with each id's positions cut into runs of at most `maxRun`: `runs` is
 * a CSR whose "rows" are the run indices (positions as in `groupIds`), `perId` one whose rows
 * are the distinct ids and whose positions are their run indices. Null when no id has more
 * than `maxRun` positions (then `groupIds`'s table serves alone).
 */
export function splitRuns(
  grouped: { csr: Uint32Array; distinct: number },
  maxRun = MAX_RUN,
): { runs: Uint32Array; runCount: number; perId: Uint32Array } | null {
  const { csr, distinct: u } = grouped;
  const offsets = csr.subarray(u, 2 * u + 1);
  const order = csr.subarray(2 * u + 1);
  const runStarts: number[] = [], idRuns: number[] = [0];
  for (let i = 0; i < u; i++) {
    for (let q = offsets[i]; q < offsets[i + 1]; q += maxRun) runStarts.push(q);
    idRuns.push(runStarts.length);
  }
  const runCount = runStarts.length;
  if (runCount === u) return null;
  runStarts.push(order.length);
  const index = Array.from({ length: runCount }, (_, r) => r);
  return {
    runs: Uint32Array.from([...index, ...runStarts, ...order]),
    runCount,
    perId: Uint32Array.from([...csr.subarray(0, u), ...idRuns, ...index]),
  };
}

/**
 * Rows of `weight` [V, D] (f32, or frozen f16, q8 or q4) picked by the i32 `ids` [...]: result
 * [..., D]. The weight gradient needs the ids' host copy (a tensor made with Tensor.from);
 * `paddingIdx` rows get no gradient (nn.Embedding's padding_idx).
 */
export function embedding(weight: Tensor, ids: Tensor, opts: { paddingIdx?: number } = {}): Tensor {
  if (weight.shape.length !== 2 || weight.dtype === "i32") {
    throw new Error(`embedding: weight must be a 2-D f32/f16/q8/q4 table [V, D], got ${weight.describe()}`);
  }
  if (ids.dtype !== "i32") throw new Error(`embedding: ids must be i32, got ${ids.describe()}`);
  const [vocab, d] = weight.shape;
  if (ids.host) {
    const bad = ids.host.findIndex((v) => v < 0 || v >= vocab);
    if (bad >= 0) {
      throw new Error(`embedding: id ${ids.host[bad]} at position ${bad} is outside [0, ${vocab})`);
    }
  }
  if (weight.requiresGrad && !ids.host) {
    throw new Error(
      "embedding: the weight gradient needs ids made from host data (Tensor.from with an Int32Array)",
    );
  }
  const gpu = weight.gpu;
  const out = Tensor.empty(gpu, [...ids.shape, d]);
  encodeGather(weight, ids, out);
  const host = ids.host;
  return record("embedding", out, [weight], [], (g) => {
    const grouped = groupIds(host!, opts.paddingIdx);
    const gw = Tensor.zeros(gpu, [vocab, d]);
    if (grouped.distinct === 0 || d === 0) return [gw];
    const split = splitRuns(grouped);
    if (!split) {
      sumRows(grouped.csr, grouped.distinct, g, gw);
    } else {
      const partial = Tensor.empty(gpu, [split.runCount, d]);
      sumRows(split.runs, split.runCount, g, partial);
      sumRows(split.perId, grouped.distinct, partial, gw);
    }
    return [gw];
  });
}

/**
 * out = the rows of `weight` that `ids` pick. A table over one storage binding (a large
 * vocabulary's) is read in bands of rows (lib/gpu/bands.ts), an output over one (many tokens
 * of a wide model) written in bands of tokens: one dispatch for each pair.
 */
function encodeGather(weight: Tensor, ids: Tensor, out: Tensor): void {
  const gpu = weight.gpu;
  const [vocab, d] = weight.shape;
  const quant = isQuantized(weight.dtype) ? weight.dtype as QuantKind : null;
  const elementBytes = quant === "q8" ? 1 : quant === "q4" ? 0.5 : weight.dtype === "f16" ? 2 : 4;
  const bands = rowBands(gpu, vocab, d, `embedding: the table ${weight.describe()}`, { elementBytes });
  for (const part of rowBands(gpu, ids.size, d, `embedding: the output ${out.describe()}`)) {
    const picks = rowWindow(gpu, part.first, part.rows, 1);
    const idsAt = bandBinding(gpu, ids.buffer, picks), y = bandBinding(gpu, out.buffer, part);
    const n = part.rows * d;
    bands.forEach((band, i) => {
      const table = bandBinding(gpu, weight.buffer, band);
      const rows = [band.first, band.first + band.rows, band.base, i === 0 ? 1 : 0];
      const params = (scaleShift: number) => u32s(n, d, vocab, ...rows, scaleShift, part.base, picks.base);
      if (!quant) {
        launch(gpu, embeddingKernel(weight.dtype === "f16"), [idsAt, table, y], n, params(0));
        return;
      }
      const [scales, shift] = bandScales(weight, band, bands.length > 1);
      launch(gpu, quantEmbeddingKernel(quant), [idsAt, table, scales, y], n, params(shift));
    });
  }
}

/**
 * The scales of a quantized table's band of rows and the group their binding starts at: the
 * whole buffer when the codes are bound whole (not `banded`).
 */
function bandScales(weight: Tensor, band: RowBand, banded: boolean): [Binding, number] {
  if (!banded) return [weight.scales, 0];
  const d = weight.shape[1], align = weight.gpu.limits.minStorageBufferOffsetAlignment;
  const g0 = Math.floor((band.first * d) / QUANT_GROUP);
  const g1 = Math.ceil(((band.first + band.rows) * d) / QUANT_GROUP);
  const start = Math.floor((4 * g0) / align) * align;
  return [{ buffer: weight.scales, offset: start, size: 4 * g1 - start }, start / 4];
}

/**
 * dst[rows[u]] = Σ src[positions of u] over a CSR table (see {@link groupIds}), one workgroup
 * per u; a dst over one storage binding (a large vocabulary's table gradient) is written in
 * bands of rows, each taking the ids that fall in it (the rows are ascending). A src over one
 * (the output gradient of many tokens) is read in bands of its rows, one dispatch each, adding
 * to what the bands before wrote.
 */
function sumRows(csr: Uint32Array, count: number, src: Tensor, dst: Tensor): void {
  const gpu = src.gpu;
  const [rows, d] = dst.shape;
  const table = Tensor.from(gpu, new Int32Array(csr.buffer), [csr.length]);
  const parts = rowBands(gpu, src.size / d, d, `embedding gradient: the output gradient ${src.describe()}`);
  let u0 = 0;
  for (const band of rowBands(gpu, rows, d, `embedding gradient ${dst.describe()}`)) {
    let u1 = u0;
    while (u1 < count && csr[u1] < band.first + band.rows) u1++;
    if (u1 > u0) {
      const head = [u1 - u0, d, count, 2 * count + 1, u0, band.first, band.base];
      parts.forEach((part, k) =>
        gpu.stream.dispatch(
          embeddingBackwardKernel,
          [table.buffer, bandBinding(gpu, src.buffer, part), bandBinding(gpu, dst.buffer, band)],
          grid(gpu, u1 - u0),
          u32s(...head, part.first, part.first + part.rows, part.base, k > 0 ? 1 : 0),
        )
      );
    }
    u0 = u1;
  }
}
