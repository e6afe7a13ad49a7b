/**
 * The heads of the decoder families (GPT-2, LLaMA) on the final hidden state: the language
 * model head with HF's shifted next-token loss, the sequence classifier pooled at each row's
 * last non-pad token (GPT2ForSequenceClassification / LlamaForSequenceClassification), or none.
 * @module
 */
import type { HfConfig } from "../io/hf_config.ts";
import type { Linear } from "../nn/linear.ts";
import { causalLmLoss, classificationLoss } from "../nn/loss.ts";
import { gatherPositions, lastTokenPositions } from "../nn/pool.ts";
import type { Tensor } from "../tensor/mod.ts";
import type { Batch, ModelOutput, ModelTask } from "./model.ts";

/**
 * Logits (and the loss when the batch has labels) of `task` over `hidden` [b, t, h]. `head`
 * is lm_head (causal-lm) or score (seq-cls); `host` the input ids on the CPU (seq-cls pooling).
 * For task "base" the logits are the hidden state itself.
 */
export function decoderHead(
  task: ModelTask,
  config: HfConfig,
  head: Linear | null,
  hidden: Tensor,
  batch: Batch,
  host: Int32Array | undefined,
): ModelOutput {
  const [b, t] = hidden.shape;
  if (task === "causal-lm") {
    const logits = head!.forward(hidden);
    const loss = batch.labels ? causalLmLoss(logits, batch.labels, !batch.nextTokenLabels) : undefined;
    return { logits, hidden, loss };
  }
  if (task === "seq-cls") {
    if (!host) throw new Error(`${config.modelType}: sequence classification needs the input ids on the CPU`);
    const pooled = gatherPositions(hidden, lastTokenPositions(host, b, t, config.padTokenId));
    const logits = head!.forward(pooled);
    const loss = batch.labels ? classificationLoss(logits, batch.labels, config.problemType) : undefined;
    return { logits, hidden, loss };
  }
  return { logits: hidden, hidden };
}
