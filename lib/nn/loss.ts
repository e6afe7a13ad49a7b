/**
 * The losses of the task heads, as transformers defines them: causal LM (mean next-token
 * cross-entropy, −100 ignored), sequence/image classification (by `problem_type`) and token
 * classification.
 * @module
 */
import type { ProblemType } from "../io/hf_config.ts";
import {
  add,
  concat,
  crossEntropy,
  exp,
  IGNORE_INDEX,
  log1p,
  mean,
  mul,
  neg,
  noGrad,
  record,
  relu,
  reshape,
  scale,
  sigmoid,
  slice,
  sub,
  Tensor,
} from "../tensor/mod.ts";

/**
 * Mean cross-entropy of logits [B, T, V] against labels [B, T] (i32, −100 ignored). With
 * `shift` (HF's convention: labels are a copy of the input ids), position t predicts label
 * t + 1 and the last position predicts nothing; without it, each position's label is already
 * its next token (as {@link CausalLmDataset} makes them).
 */
export function causalLmLoss(logits: Tensor, labels: Tensor, shift: boolean): Tensor {
  const [b, t] = logits.shape;
  if (labels.dtype !== "i32" || labels.shape.length !== 2 || labels.shape[0] !== b || labels.shape[1] !== t) {
    throw new Error(`causal LM labels must be i32 [${b}, ${t}] like the input ids, got ${labels.describe()}`);
  }
  return crossEntropy(logits, shift ? shiftLeft(labels) : labels, { ignoreIndex: IGNORE_INDEX });
}

/** labels[:, 1:] followed by a column of −100 (no gradient: labels are integers). */
function shiftLeft(labels: Tensor): Tensor {
  const [b, t] = labels.shape;
  if (labels.host) {
    const out = new Int32Array(b * t).fill(IGNORE_INDEX);
    for (let i = 0; i < b; i++) out.set(labels.host.subarray(i * t + 1, (i + 1) * t), i * t);
    return Tensor.from(labels.gpu, out, [b, t]);
  }
  const pad = Tensor.from(labels.gpu, new Int32Array(b).fill(IGNORE_INDEX), [b, 1]);
  return concat([slice(labels, 1, 1), pad], 1);
}

/**
 * The loss of a classification head over logits [B, L]: mean cross-entropy against i32 class
 * ids [B] (single-label), mean squared error against f32 targets [B] or [B, L] (regression,
 * what transformers picks when `problem_type` is unset and L = 1), or mean binary
 * cross-entropy against f32 multi-hot targets [B, L] (multi-label).
 */
export function classificationLoss(logits: Tensor, labels: Tensor, problemType: ProblemType | null): Tensor {
  const [b, l] = logits.shape;
  const type = problemType ?? (l === 1 ? "regression" : "single_label_classification");
  if (type === "regression") {
    if (labels.dtype !== "f32" || labels.size !== b * l) {
      throw new Error(
        `regression labels must be f32 [${b}]${l > 1 ? ` or [${b}, ${l}]` : ""}, got ${labels.describe()}`,
      );
    }
    const diff = sub(logits, reshape(labels, [b, l]));
    return mean(mul(diff, diff));
  }
  if (type === "multi_label_classification") {
    if (labels.dtype !== "f32" || labels.size !== b * l) {
      throw new Error(
        `multi-label targets must be f32 [${b}, ${l}] (0 or 1 per label), got ${labels.describe()}`,
      );
    }
    return bceWithLogits(logits, reshape(labels, [b, l]));
  }
  if (labels.dtype !== "i32" || labels.shape.length !== 1 || labels.shape[0] !== b) {
    throw new Error(
      `classification labels must be i32 [${b}] (one class id per row), got ${labels.describe()}`,
    );
  }
  return crossEntropy(logits, labels);
}

/**
 * The loss of a token classifier (transformers' *ForTokenClassification): mean cross-entropy of
 * logits [B, T, L] against i32 tag ids [B, T], positions labelled −100 (special tokens, padding,
 * a word's later pieces) ignored.
 */
export function tokenClassificationLoss(logits: Tensor, labels: Tensor): Tensor {
  const [b, t] = logits.shape;
  if (labels.dtype !== "i32" || labels.shape.length !== 2 || labels.shape[0] !== b || labels.shape[1] !== t) {
    throw new Error(
      `token classification labels must be i32 [${b}, ${t}] (a tag id or −100 per token), got ${labels.describe()}`,
    );
  }
  return crossEntropy(logits, labels, { ignoreIndex: IGNORE_INDEX });
}

/**
 * torch's BCEWithLogitsLoss: the mean of max(x, 0) − x·y + log(1 + e^−|x|), which never
 * exponentiates a large positive value and keeps a small loss exact, with torch's gradient
 * (σ(x) − y) / n, also at x = 0, where the |x| of that form has none.
 */
export function bceWithLogits(x: Tensor, y: Tensor): Tensor {
  const loss = noGrad(() => {
    const magnitude = add(relu(x), relu(neg(x)));
    return mean(add(sub(relu(x), mul(x, y)), log1p(exp(neg(magnitude)))));
  });
  return record("bce_with_logits", loss, [x], [x, y], (g, [vx, vy]) => [
    mul(sub(sigmoid(vx), vy), scale(g, 1 / vx.size)),
  ]);
}
