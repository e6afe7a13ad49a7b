/**
 * LayerNorm (BERT, RoBERTa, GPT-2, ViT) and RMSNorm (LLaMA) over the last dimension, with
 * their gradient rules for the input, the weight and the bias.
 * @module
 */
import { rowWorkgroupSize } from "../../../kernels/indexing.ts";
import { normBackwardKernel, normForwardKernel, normParamGradKernel } from "../../../kernels/norm.ts";
import { grid } from "../../gpu/mod.ts";
import { record } from "../autograd.ts";
import { sameShape } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { reduceRaw } from "./reduce.ts";
import { dropoutAdd, type DropoutKey, type DropoutSpec, dropoutWords, needsFactors } from "./dropout.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";

/** `(x − mean) / sqrt(var + eps) · weight + bias` over the last dimension (biased variance). */
export function layerNorm(x: Tensor, weight: Tensor, bias?: Tensor | null, eps = 1e-5): Tensor {
  return norm("layerNorm", false, x, weight, bias ?? null, eps, null);
}

/**
 * `layerNorm(residual + dropout(x, p, key), weight, bias, eps)` in one pass, with the masks
 * `dropout` draws (no dropout when `dropout` is null or p = 0): a post-LN residual connection
 * (BERT, RoBERTa), the same values as the three ops.
 */
export function residualLayerNorm(
  x: Tensor,
  residual: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  eps: number,
  dropout: DropoutSpec | null = null,
): Tensor {
  expectDtype("residualLayerNorm", "f32", x, residual);
  if (!sameShape(x.shape, residual.shape)) {
    throw new Error(
      `residualLayerNorm: x ${x.describe()} and the residual ${residual.describe()} differ in shape`,
    );
  }
  const p = dropout?.p ?? 0;
  if (!(p >= 0 && p <= 1)) throw new Error(`residualLayerNorm: dropout probability ${p} is outside [0, 1]`);
  // rows at given positions drop through factors: the two ops, the same values
  if (p > 0 && needsFactors(dropout)) {
    return layerNorm(dropoutAdd(x, residual, p, dropout!.key), weight, bias, eps);
  }
  return norm("residualLayerNorm", false, x, weight, bias, eps, { residual, p, key: dropout?.key ?? null });
}

/** `x / sqrt(mean(x²) + eps) · weight` over the last dimension. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  return norm("rmsNorm", true, x, weight, null, eps, null);
}

/** The residual added before a norm, and the dropout on x. */
interface Residual {
  residual: Tensor;
  p: number;
  key: DropoutKey | null;
}

function norm(
  op: string,
  rms: boolean,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  eps: number,
  res: Residual | null,
): Tensor {
  expectDtype(op, "f32", x, w, ...(b ? [b] : []));
  const d = x.shape[x.shape.length - 1];
  if (x.shape.length === 0 || !sameShape(w.shape, [d]) || (b && !sameShape(b.shape, [d]))) {
    throw new Error(
      `${op}: weight ${w.describe()}${
        b ? ` and bias ${b.describe()}` : ""
      } must be [${d}] for input ${x.describe()}`,
    );
  }
  if (d === 0) throw new Error(`${op}: the normalised dimension of ${x.describe()} is empty`);
  const gpu = x.gpu;
  const rows = x.size / d;
  const wg = rowWorkgroupSize(d);
  // the dropout on x: all kept, scale 1, without one
  const key = res && res.p > 0 ? res.key : null;
  const dropping = key !== null;
  const drop = dropoutWords(key ? { p: res!.p, key } : null, key?.rows ? x.size / key.rows.batch : 1);
  const y = Tensor.empty(gpu, x.shape);
  const stats = Tensor.empty(gpu, [rows, 2]);
  // the normalised rows: x, or s = residual + dropout(x), which the forward pass writes
  const s = res ? Tensor.empty(gpu, x.shape) : x;
  const bufs = [
    x.buffer,
    ...(res ? [res.residual.buffer, s.buffer] : []),
    w.buffer,
    ...(b ? [b.buffer] : []),
    y.buffer,
    stats.buffer,
  ];
  if (rows > 0) {
    const kernel = normForwardKernel(rms, !!b, wg, !!res);
    gpu.stream.dispatch(kernel, bufs, grid(gpu, rows), u32s(rows, d, f(eps), ...drop));
  }
  const inputs = [x, ...(res ? [res.residual] : []), w, ...(b ? [b] : [])];
  const out = record(op, y, inputs, [s, w, stats], (g, [vs, vw, vstats], need) => {
    const [needX, needR] = [need[0], res ? need[1] : false];
    const [needW, needB] = res ? [need[2], need[3]] : [need[1], need[2]];
    let gx: Tensor | null = null,
      gr: Tensor | null = null,
      gw: Tensor | null = null,
      gb: Tensor | null = null;
    if (needX || needR) {
      // the gradient of the normalised rows is the residual's; x's goes through the dropout mask
      const gs = Tensor.empty(gpu, vs.shape);
      const gd = dropping && needX ? Tensor.empty(gpu, vs.shape) : null;
      const k = normBackwardKernel(rms, wg, !!gd);
      const bind = [vs.buffer, vw.buffer, vstats.buffer, g.buffer, gs.buffer, ...(gd ? [gd.buffer] : [])];
      if (rows > 0) gpu.stream.dispatch(k, bind, grid(gpu, rows), u32s(rows, d, ...drop));
      gx = needX ? gd ?? gs : null;
      gr = needR ? gs : null;
    }
    if (needW || needB) {
      const chunks = Math.max(1, Math.min(Math.floor(16384 / d), Math.ceil(rows / 32)));
      const pw = Tensor.empty(gpu, [chunks, d]);
      const pb = b ? Tensor.empty(gpu, [chunks, d]) : null;
      const bind = [vs.buffer, vstats.buffer, g.buffer, pw.buffer, ...(pb ? [pb.buffer] : [])];
      launch(gpu, normParamGradKernel(!!b), bind, chunks * d, u32s(rows, d, chunks));
      gw = reduceRaw(pw, [true, false], 1, [d]);
      gb = pb ? reduceRaw(pb, [true, false], 1, [d]) : null;
    }
    return [gx, ...(res ? [gr] : []), gw, ...(b ? [gb] : [])];
  });
  stats.dispose();
  if (res) s.dispose();
  return out;
}
