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
import { expectDtype, f, launch, u32s } from "./util.ts";

/** `(x − mean) / sqrt(var + eps) · weight + bias` over the last dimension (biased variance). */
export function layerNorm(x: Tensor, weight: Tensor, bias?: Tensor | null, eps = 1e-5): Tensor {
  return norm("layerNorm", false, x, weight, bias ?? null, eps);
}

/** `x / sqrt(mean(x²) + eps) · weight` over the last dimension. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  return norm("rmsNorm", true, x, weight, null, eps);
}

function norm(op: string, rms: boolean, x: Tensor, w: Tensor, b: Tensor | null, eps: number): Tensor {
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
  const y = Tensor.empty(gpu, x.shape);
  const stats = Tensor.empty(gpu, [rows, 2]);
  const bufs = [x.buffer, w.buffer, ...(b ? [b.buffer] : []), y.buffer, stats.buffer];
  if (rows > 0) {
    gpu.stream.dispatch(
      normForwardKernel(rms, !!b, rowWorkgroupSize(d)),
      bufs,
      grid(gpu, rows),
      u32s(rows, d, f(eps)),
    );
  }
  const out = record(op, y, b ? [x, w, b] : [x, w], [x, w, stats], (g, [vx, vw, vs], need) => {
    let gx: Tensor | null = null, gw: Tensor | null = null, gb: Tensor | null = null;
    if (need[0]) {
      gx = Tensor.empty(gpu, vx.shape);
      const k = normBackwardKernel(rms, rowWorkgroupSize(d));
      gpu.stream.dispatch(
        k,
        [vx.buffer, vw.buffer, vs.buffer, g.buffer, gx.buffer],
        grid(gpu, rows),
        u32s(rows, d),
      );
    }
    if (need[1] || need[2]) {
      const chunks = Math.max(1, Math.min(Math.floor(16384 / d), Math.ceil(rows / 32)));
      const pw = Tensor.empty(gpu, [chunks, d]);
      const pb = b ? Tensor.empty(gpu, [chunks, d]) : null;
      const bind = [vx.buffer, vs.buffer, g.buffer, pw.buffer, ...(pb ? [pb.buffer] : [])];
      launch(gpu, normParamGradKernel(!!b), bind, chunks * d, u32s(rows, d, chunks));
      gw = reduceRaw(pw, [true, false], 1, [d]);
      gb = pb ? reduceRaw(pb, [true, false], 1, [d]) : null;
    }
    return [gx, gw, gb];
  });
  stats.dispose();
  return out;
}
