/**
 * Cross-entropy with an ignore index (HF's -100), averaged over the targets that count, and
 * its gradient rule. The count lives in a GPU buffer: nothing is read back.
 * @module
 */
import {
  crossEntropyBackwardKernel,
  crossEntropyRowsKernel,
  crossEntropyTotalKernel,
} from "../../../kernels/loss.ts";
import { bandBinding, rowBands } from "../../gpu/bands.ts";
import { grid } from "../../gpu/mod.ts";
import { record } from "../autograd.ts";
import { fmt, sameShape } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { expectDtype, launch, u32s } from "./util.ts";

/** Options of {@link crossEntropy}. */
/** Label id that losses ignore (PyTorch's ignore_index, which transformers' labels use). */
export const IGNORE_INDEX: number = -100;

export interface CrossEntropyOptions {
  /** Targets with this value do not count; default {@link IGNORE_INDEX}. */
  ignoreIndex?: number;
  /** `mean` over the counted targets (default; 0 when none counts) or `sum`. */
  reduction?: "mean" | "sum";
}

/**
 * `−log softmax(logits)[target]` over logits [..., V] and i32 targets [...], reduced to a
 * scalar (shape []).
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  expectDtype("crossEntropy", "f32", logits);
  expectDtype("crossEntropy targets", "i32", targets);
  const v = logits.shape[logits.shape.length - 1];
  if (logits.shape.length < 1 || !sameShape(targets.shape, logits.shape.slice(0, -1)) || v === 0) {
    throw new Error(
      `crossEntropy: targets ${targets.describe()} must have the logits' shape ${
        fmt(logits.shape)
      } without ` +
        "its last (class) dimension",
    );
  }
  const ignore = opts.ignoreIndex ?? IGNORE_INDEX;
  if (targets.host) {
    const bad = targets.host.findIndex((t) => t !== ignore && (t < 0 || t >= v));
    if (bad >= 0) {
      throw new Error(
        `crossEntropy: target ${targets.host[bad]} at ${bad} is outside [0, ${v}) and not ${ignore}`,
      );
    }
  }
  const mean = (opts.reduction ?? "mean") === "mean" ? 1 : 0;
  const gpu = logits.gpu;
  const rows = targets.size;
  const rowLoss = Tensor.empty(gpu, [rows]), lse = Tensor.empty(gpu, [rows, 2]); // (max, log Σ) a row
  const loss = Tensor.empty(gpu, []), count = Tensor.empty(gpu, [1]);
  // logits over one binding (an LM head's at thousands of tokens) go in bands of rows
  const bands = rows > 0 ? rowBands(gpu, rows, v, "crossEntropy logits") : [];
  for (const band of bands) {
    gpu.stream.dispatch(
      crossEntropyRowsKernel,
      [bandBinding(gpu, logits.buffer, band), targets.buffer, rowLoss.buffer, lse.buffer],
      grid(gpu, band.rows),
      u32s(band.rows, v, ignore, band.first, band.base),
    );
  }
  const totalParams = u32s(rows, v, ignore, mean);
  gpu.stream.dispatch(
    crossEntropyTotalKernel,
    [rowLoss.buffer, targets.buffer, loss.buffer, count.buffer],
    1,
    totalParams,
  );
  rowLoss.dispose();
  const out = record("crossEntropy", loss, [logits], [logits, targets, lse, count], (g, [x, t, l, c]) => {
    const gx = Tensor.empty(gpu, x.shape);
    for (const band of bands) {
      const bind = [
        bandBinding(gpu, x.buffer, band),
        t.buffer,
        l.buffer,
        g.buffer,
        c.buffer,
        bandBinding(gpu, gx.buffer, band),
      ];
      const n = band.rows * v;
      launch(gpu, crossEntropyBackwardKernel, bind, n, u32s(n, v, ignore, mean, band.first, band.base));
    }
    return [gx];
  });
  lse.dispose();
  count.dispose();
  return out;
}
