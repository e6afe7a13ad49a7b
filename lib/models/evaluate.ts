/**
 * Held-out evaluation of a causal language model: the mean over windows of each window's mean
 * next-token cross-entropy, and its perplexity. Runs under noGrad with every batch in a tidy
 * scope and one stream flush per batch (the loss readback rides on it).
 * @module
 */
import { IGNORE_INDEX } from "../tensor/mod.ts";
import { crossEntropy, noGrad, slice, Tensor, tidy } from "../tensor/mod.ts";
import type { Dataset } from "../train/data.ts";
import { collate } from "../train/batches.ts";
import type { Model } from "./model.ts";

/** Options of {@link evaluateCausalLm}. */
export interface EvaluateOptions {
  /** Windows per forward pass (default 16). */
  batchSize?: number;
  /** Evaluate only these dataset rows (default all, in order). */
  rows?: ArrayLike<number>;
}

/** What {@link evaluateCausalLm} measured. */
export interface Evaluation {
  /** Mean over windows of the window's mean next-token cross-entropy (nats). */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  windows: number;
  /** Wall-clock seconds of the evaluation (tokenization and loading excluded). */
  seconds: number;
}

/**
 * Evaluate `model` (a causal LM, put in eval mode) on the windows of `dataset` (rows with
 * next-token labels, e.g. a CausalLmDataset: each position's label is the next token).
 */
export async function evaluateCausalLm(
  model: Model,
  dataset: Dataset,
  opts: EvaluateOptions = {},
): Promise<Evaluation> {
  if (model.task !== "causal-lm") {
    throw new Error(`evaluateCausalLm: the model's task is ${model.task}, not causal-lm`);
  }
  const batchSize = opts.batchSize ?? 16;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) {
    throw new RangeError(`evaluateCausalLm: batchSize must be an integer ≥ 1, got ${batchSize}`);
  }
  const rows = opts.rows ? Array.from(opts.rows) : Array.from({ length: dataset.size }, (_, i) => i);
  if (rows.length === 0) throw new RangeError("evaluateCausalLm: no windows to evaluate");
  const gpu = model.gpu;
  model.train(false);
  const start = performance.now();
  const pending: Promise<number>[] = [];
  for (let at = 0; at < rows.length; at += batchSize) {
    const b = collate(dataset, rows.slice(at, at + batchSize));
    const [n, t] = b.shape;
    const counts = Array.from(
      { length: n },
      (_, i) => b.labels.subarray(i * t, (i + 1) * t).filter((l) => l !== IGNORE_INDEX).length,
    );
    const uniform = counts.every((c) => c === counts[0]);
    const losses = noGrad(() =>
      tidy(() => {
        const ids = Tensor.from(gpu, b.ids, [n, t]);
        const labels = Tensor.from(gpu, b.labels, [n, t]);
        const out = model.forward({
          inputIds: ids,
          inputIdsHost: b.ids,
          attentionMask: b.attentionMask,
          labels,
          nextTokenLabels: true,
        });
        // equal label counts: the batch mean is the mean of the window means
        if (uniform) return [out.loss!];
        return counts.map((_, i) =>
          crossEntropy(slice(out.logits, 0, i, i + 1), slice(labels, 0, i, i + 1), {
            ignoreIndex: IGNORE_INDEX,
          })
        );
      })
    );
    const weight = uniform ? n : 1;
    for (const l of losses) {
      pending.push(l.readLater().then((v) => v[0] * weight));
      l.dispose();
    }
    gpu.stream.flush();
  }
  const loss = (await Promise.all(pending)).reduce((a, v) => a + v, 0) / rows.length;
  return {
    loss,
    perplexity: Math.exp(loss),
    windows: rows.length,
    seconds: (performance.now() - start) / 1000,
  };
}
