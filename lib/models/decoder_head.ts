/**
 * The heads of the decoder families (GPT-2, LLaMA) on the final hidden state: the language
 * model head with HF's shifted next-token loss, the sequence classifier pooled at each row's
 * last non-pad token (GPT2ForSequenceClassification / LlamaForSequenceClassification), or none;
 * and what a classifier's last layer computed at those positions alone needs.
 * @module
 */
import type { HfConfig } from "../io/hf_config.ts";
import type { Gpu } from "../gpu/mod.ts";
import { FUSIONS } from "../nn/fusions.ts";
import type { Linear } from "../nn/linear.ts";
import { causalLmLoss, classificationLoss } from "../nn/loss.ts";
import { gatherPositions, lastTokenPositions } from "../nn/pool.ts";
import {
  crossEntropy,
  type DropoutRows,
  embedding,
  IGNORE_INDEX,
  reshape,
  slice,
  Tensor,
} from "../tensor/mod.ts";
import type { Batch, ForwardOptions, ModelOutput, ModelTask } from "./model.ts";

/**
 * A classifier's last layer computed at the pooled positions alone (each row's last non-pad
 * token; the head reads nothing else): the query there sees the keys up to it that are not
 * padding, which is what the causal and padding masks leave it in the whole layer.
 */
export interface PooledPositions {
  /** Row b's pooled position. */
  at: Int32Array;
  /** i32 [B, T]: 1 where row b's query sees key j (j ≤ at[b] and not padding). */
  keyMask: Tensor;
  /** What the layer's dropouts draw (`DropoutKey.rows`): the whole layer's masks there. */
  rows: DropoutRows;
}

/**
 * {@link PooledPositions} for a forward pass that wants only the head's output (`headOnly`) of
 * a sequence classifier; null when the last layer must run whole. `window`: the keys the last
 * layer's queries see at most (a sliding window).
 */
export function pooledPositions(
  gpu: Gpu,
  task: ModelTask,
  config: HfConfig,
  options: ForwardOptions,
  batch: Batch,
  host: Int32Array | undefined,
  b: number,
  t: number,
  window = Infinity,
): PooledPositions | null {
  if (!options.headOnly || task !== "seq-cls" || !FUSIONS.head || !host) return null;
  const at = lastTokenPositions(host, b, t, config.padTokenId);
  const padding = batch.attentionMask;
  const mask = Int32Array.from({ length: b * t }, (_, i) => {
    const row = Math.floor(i / t), j = i % t;
    return j <= at[row] && at[row] - j < window && (!padding || padding[i] !== 0) ? 1 : 0;
  });
  return { at, keyMask: Tensor.from(gpu, mask, [b, t]), rows: { batch: b, length: t, at } };
}

/** x [B, T, W] → [B, 1, W]: each row at its pooled position (gradients flow back). */
export function atPooled(x: Tensor, pooled: PooledPositions): Tensor {
  const [b, , w] = x.shape;
  return reshape(gatherPositions(x, pooled.at), [b, 1, w]);
}

/**
 * Logits (and the loss when the batch has labels) of `task` over `hidden` [b, t, h]. `head`
 * is lm_head (causal-lm) or score (seq-cls); `host` the input ids on the CPU (seq-cls pooling).
 * For task "base" the logits are the hidden state itself. With `pooled`, hidden [b, 1, h] holds
 * the pooled positions already. With `lastLogits`, a causal LM's logits at the last position
 * only, and no loss; with `headOnly` and labels, a causal LM's logits at the positions that have a
 * target alone ([targets, vocab]: instruction data learns a few completion tokens after long prompts).
 */
export function decoderHead(
  task: ModelTask,
  config: HfConfig,
  head: Linear | null,
  hidden: Tensor,
  batch: Batch,
  host: Int32Array | undefined,
  pooled: PooledPositions | null = null,
  options: ForwardOptions = {},
): ModelOutput {
  const [b, t] = hidden.shape;
  if (task === "causal-lm" && options.lastLogits) {
    return { logits: head!.forward(slice(hidden, 1, t - 1, t)), hidden };
  }
  const targets = task === "causal-lm" && options.headOnly && FUSIONS.head ? targetRows(batch) : null;
  if (targets) {
    // only the loss is wanted: the LM head at the positions that predict something
    const rows = embedding(reshape(hidden, [b * t, hidden.shape[2]]), targets.rows);
    const logits = head!.forward(rows); // [targets, vocab]
    return { logits, hidden, loss: crossEntropy(logits, targets.labels) };
  }
  if (task === "causal-lm") {
    const logits = head!.forward(hidden);
    const loss = batch.labels ? causalLmLoss(logits, batch.labels, !batch.nextTokenLabels) : undefined;
    return { logits, hidden, loss };
  }
  if (task === "seq-cls") {
    if (!host) throw new Error(`${config.modelType}: sequence classification needs the input ids on the CPU`);
    const vectors = pooled
      ? reshape(hidden, [b, hidden.shape[2]])
      : gatherPositions(hidden, lastTokenPositions(host, b, t, config.padTokenId));
    const logits = head!.forward(vectors);
    const loss = batch.labels ? classificationLoss(logits, batch.labels, config.problemType) : undefined;
    return { logits, hidden, loss };
  }
  return { logits: hidden, hidden };
}

/** The share of a batch's positions below which the LM head runs at the targets alone. */
const TARGET_SHARE = 0.75;

/**
 * The positions of a causal LM batch that predict a token (flat indices into [B·T]) and their
 * targets, from the labels' CPU copy (HF's labels shifted by one); null when the labels are on the
 * GPU alone, nothing is predicted, or most positions are (language-model windows).
 */
function targetRows(batch: Batch): { rows: Tensor; labels: Tensor } | null {
  const labels = batch.labels;
  if (!labels?.host || labels.shape.length !== 2) return null;
  const [b, t] = labels.shape, host = labels.host;
  const rows: number[] = [], targets: number[] = [];
  for (let i = 0; i < b * t; i++) {
    const next = batch.nextTokenLabels ? host[i] : i % t === t - 1 ? IGNORE_INDEX : host[i + 1];
    if (next !== IGNORE_INDEX) [rows.push(i), targets.push(next)];
  }
  // most positions predicting (language-model windows): gathering them would cost more than it saves
  if (rows.length === 0 || rows.length > TARGET_SHARE * b * t) return null;
  const gpu = labels.gpu, n = rows.length;
  return {
    rows: Tensor.from(gpu, Int32Array.from(rows), [n]),
    labels: Tensor.from(gpu, Int32Array.from(targets), [n]),
  };
}
