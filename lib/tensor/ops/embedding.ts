/**
 * Embedding lookup with a deterministic scatter-add gradient (see kernels/embedding.ts).
 * @module
 */
import { embeddingBackwardKernel, embeddingKernel } from "../../../kernels/embedding.ts";
import { grid } from "../../gpu/mod.ts";
import { record } from "../autograd.ts";
import { Tensor } from "../tensor.ts";
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

/**
 * Rows of `weight` [V, D] (f32, or frozen f16) picked by the i32 `ids` [...]: result
 * [..., D]. The weight gradient needs the ids' host copy (a tensor made with Tensor.from);
 * `paddingIdx` rows get no gradient (nn.Embedding's padding_idx).
 */
export function embedding(weight: Tensor, ids: Tensor, opts: { paddingIdx?: number } = {}): Tensor {
  if (weight.shape.length !== 2 || weight.dtype === "i32") {
    throw new Error(`embedding: weight must be a 2-D f32/f16 table [V, D], got ${weight.describe()}`);
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
  const kernel = embeddingKernel(weight.dtype === "f16");
  launch(gpu, kernel, [ids.buffer, weight.buffer, out.buffer], out.size, u32s(out.size, d, vocab));
  const host = ids.host;
  return record("embedding", out, [weight], [], (g) => {
    const { csr, distinct } = groupIds(host!, opts.paddingIdx);
    const gw = Tensor.zeros(gpu, [vocab, d]);
    const table = Tensor.from(gpu, new Int32Array(csr.buffer), [csr.length]);
    const params = u32s(distinct, d, distinct, 2 * distinct + 1);
    if (distinct > 0 && d > 0) {
      gpu.stream.dispatch(
        embeddingBackwardKernel,
        [table.buffer, g.buffer, gw.buffer],
        grid(gpu, distinct),
        params,
      );
    }
    return [gw];
  });
}
