/**
 * Generation's repetition penalty on the GPU (kernels/penalty.ts): the penalised logits, and
 * the flags of the tokens each row holds. No autograd: decoding only.
 * @module
 */
import { markSeenKernel, repetitionPenaltyKernel } from "../../../kernels/penalty.ts";
import { sameShape } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";

/**
 * logits [..., vocab] with each logit whose `seen` flag (i32, the same shape) is set divided by
 * `penalty` when positive, multiplied by it otherwise.
 */
export function repetitionPenalty(logits: Tensor, seen: Tensor, penalty: number): Tensor {
  expectDtype("repetitionPenalty", "f32", logits);
  expectDtype("repetitionPenalty", "i32", seen);
  if (!sameShape(logits.shape, seen.shape)) {
    throw new Error(`repetitionPenalty: flags ${seen.describe()} do not match logits ${logits.describe()}`);
  }
  if (!(penalty > 0)) throw new RangeError(`repetitionPenalty: the penalty must be > 0, got ${penalty}`);
  const out = Tensor.empty(logits.gpu, logits.shape);
  launch(
    logits.gpu,
    repetitionPenaltyKernel,
    [logits.buffer, seen.buffer, out.buffer],
    logits.size,
    u32s(logits.size, f(penalty)),
  );
  return out;
}

/** Set the flag of token ids[r] in row r of `seen` [rows, vocab] (i32), in place; ids outside the vocabulary are skipped. */
export function markSeen(seen: Tensor, ids: Tensor): void {
  expectDtype("markSeen", "i32", seen, ids);
  const rows = ids.size, vocab = seen.shape[seen.shape.length - 1];
  if (seen.size !== rows * vocab) {
    throw new Error(`markSeen: flags ${seen.describe()} do not hold one row for each of ${rows} ids`);
  }
  launch(seen.gpu, markSeenKernel, [ids.buffer, seen.buffer], rows, u32s(rows, vocab));
}
