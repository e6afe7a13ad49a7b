/**
 * Using a trained classifier: class probabilities for texts (a sequence classifier, with or
 * without its adapter) or images (a ViT classifier). Text generation is in generate.ts.
 *
 * ```ts
 * import type { Model } from "../models/model.ts";
 * import type { Tokenizer } from "../io/tokenizer.ts";
 * declare const model: Model, tokenizer: Tokenizer;
 * const [p] = await classify(model, tokenizer, [{ text: "cheap pills now" }]);
 * console.log(p.id, p.probabilities);
 * ```
 * @module
 */
import type { Tokenizer } from "../io/tokenizer.ts";
import { maxTokens } from "../io/hf_config.ts";
import type { Batch, Model } from "../models/model.ts";
import { noGrad, Tensor, tidy } from "../tensor/mod.ts";
import { ClassificationDataset } from "../train/data.ts";
import { BatchIterator } from "../train/batches.ts";
import { loadInOrder } from "../train/image_data.ts";
import { type ImagePixels, toModelBatch } from "../train/tasks.ts";

/** A text to classify: one text, or a pair (GLUE-style tasks). */
export interface TextInput {
  /** The text (the first of a pair). */
  text: string;
  /** The second text of a pair task. */
  pair?: string;
}

/** Options of {@link classify}. */
export interface ClassifyOptions {
  /** Longest row in tokens; longer texts are cut (default: the model's positions, at most 512). */
  maxLength?: number;
  /** Texts per forward pass (default 16). */
  batchSize?: number;
  /** Told the inputs answered so far and all of them, every few batches (a progress display). */
  onProgress?: (done: number, total: number) => void;
}

/** One input's prediction. */
export interface Prediction {
  /** The most probable class id (0 for a regression head). */
  id: number;
  /**
   * Softmax probability of each class id ([1] for a regression head); a multi-label head's
   * sigmoid of each label's logit.
   */
  probabilities: number[];
  /** A multi-label head's predicted labels: the ids whose probability is above 0.5. */
  labels?: number[];
  /** The output of a regression head (one output: problem_type "regression"). */
  value?: number;
}

/**
 * Class probabilities of `inputs` under `model` (a sequence classifier, in eval mode: no
 * dropout, no gradients), in input order; a regression head's value. Each batch is tokenized
 * and submitted in turn, and read back a few batches later.
 */
export async function classify(
  model: Model,
  tokenizer: Tokenizer,
  inputs: readonly TextInput[],
  opts: ClassifyOptions = {},
): Promise<Prediction[]> {
  if (model.task !== "seq-cls") {
    throw new Error(`classify: the model has a ${model.task} head, not a sequence classifier`);
  }
  if (inputs.length === 0) return [];
  const maxLength = opts.maxLength ?? Math.min(maxTokens(model.config), 512);
  const examples = inputs.map((x) => ({ ...x, label: 0 }));
  const batches = new BatchIterator(new ClassificationDataset(examples, tokenizer, { maxLength }), {
    batchSize: opts.batchSize ?? 16,
    shuffle: false,
  });
  const size = batches.batchSize;
  const steps = Array.from({ length: batches.stepsPerEpoch }, (_, step) => ({
    rows: Math.min(size, inputs.length - step * size),
    inputs: () => toModelBatch(model, batches.batch({ epoch: 0, step }), "seq-cls", false),
  }));
  return await probabilities(model, steps, opts.onProgress);
}

/** An image to classify: its floats, a function that makes them, or one that loads such (decoded per batch). */
export type ImageInput = ImagePixels | { load: () => Promise<ImagePixels> };

/**
 * Class probabilities of preprocessed images (`[3, height, width]` floats each, as
 * lib/io/image.ts makes them, functions that make them when their batch runs, or images that
 * load them then: decoded a batch at a time, the next batch while the GPU runs this one) under
 * `model` (an image classifier, in eval mode), in input order.
 */
export async function classifyImages(
  model: Model,
  images: readonly ImageInput[],
  opts: Pick<ClassifyOptions, "batchSize" | "onProgress"> = {},
): Promise<Prediction[]> {
  if (model.task !== "image-cls") {
    throw new Error(`classifyImages: the model has a ${model.task} head, not an image classifier`);
  }
  const size = "imageSize" in model.config ? model.config.imageSize : 0;
  const per = 3 * size * size;
  const batchSize = opts.batchSize ?? 16, batches = [];
  for (let i = 0; i < images.length; i += batchSize) {
    const first = i, part = images.slice(i, i + batchSize);
    let loaded: ImagePixels[] = [];
    batches.push({
      rows: part.length,
      load: async () => {
        // a few an image worker under way; the first failed in input order is thrown
        loaded = await loadInOrder(part.map((p) => "load" in p ? p.load : () => Promise.resolve(p)));
      },
      // pixels made when the batch runs: a large set is never held as floats all at once
      inputs: (): Batch => {
        const pixels = new Float32Array(part.length * per);
        loaded.forEach((p, j) => {
          const values = typeof p === "function" ? p() : p;
          if (values.length !== per) {
            throw new Error(
              `classifyImages: image ${
                first + j
              } has ${values.length} values, the model takes 3×${size}×${size}`,
            );
          }
          pixels.set(values, j * per);
        });
        loaded = [];
        return { pixelValues: Tensor.from(model.gpu, pixels, [part.length, 3, size, size]) };
      },
    });
  }
  return await probabilities(model, batches, opts.onProgress);
}

/** A batch of {@link probabilities}: its rows, what loads it (before `inputs`), and its model inputs. */
interface ProbabilityBatch {
  rows: number;
  load?: () => Promise<void>;
  inputs: () => Batch;
}

/**
 * Class probabilities (softmax, in float64) of each batch's logits, or a one-output head's value
 * as it is. Each batch is submitted when encoded; reads are awaited 8 batches at a time.
 */
async function probabilities(
  model: Model,
  batches: readonly ProbabilityBatch[],
  onProgress?: (done: number, total: number) => void,
): Promise<Prediction[]> {
  const total = batches.reduce((n, b) => n + b.rows, 0);
  const wasTraining = model.training;
  model.train(false);
  const out: Prediction[] = [];
  // each batch is submitted as it is encoded; reads are awaited 8 batches at a time, which bounds
  // the staging memory and how far the CPU runs ahead, as evaluate does
  let reads: { rows: number; logits: Promise<Float32Array> }[] = [];
  const multiLabel = model.config.problemType === "multi_label_classification";
  const collect = async () => {
    if (reads.length === 0) return; // all read at the last few batches' collect
    for (const { rows, logits } of reads) {
      const l = await logits, classes = l.length / rows;
      for (let r = 0; r < rows; r++) {
        const row = Array.from(l.subarray(r * classes, (r + 1) * classes));
        if (multiLabel) {
          // each label on its own: σ(logit), predicted above 0.5
          const p = row.map((x) => 1 / (1 + Math.exp(-x)));
          out.push({
            id: row.indexOf(Math.max(...row)),
            probabilities: p,
            labels: p.flatMap((q, id) => q > 0.5 ? [id] : []),
          });
          continue;
        }
        if (classes === 1) {
          out.push({ id: 0, probabilities: [1], value: row[0] });
          continue;
        }
        const max = Math.max(...row), e = row.map((v) => Math.exp(v - max)); // a row: the classes
        const sum = e.reduce((a, b) => a + b, 0);
        out.push({ id: row.indexOf(max), probabilities: e.map((v) => v / sum) });
      }
    }
    reads = [];
    onProgress?.(out.length, total);
  };
  try {
    // each batch's load (if any) runs while the batch before it is encoded and run
    let ahead = batches[0]?.load?.();
    for (const [i, b] of batches.entries()) {
      await ahead;
      ahead = batches[i + 1]?.load?.();
      ahead?.catch(() => {}); // awaited next turn; not unhandled should this batch throw
      const { logits } = tidy(() =>
        noGrad(() => ({ logits: model.forward(b.inputs(), { headOnly: true }).logits.readLater() }))
      );
      model.gpu.stream.flush();
      reads.push({ rows: b.rows, logits });
      if (reads.length >= 8) await collect();
    }
    await collect();
    return out;
  } finally {
    model.train(wasTraining);
  }
}
