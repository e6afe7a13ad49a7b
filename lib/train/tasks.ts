/**
 * What the trainer and the evaluator need per task: CPU batches (token rows or images) turned
 * into model inputs, the training loss of a batch, and evaluation over a whole split (mean
 * loss; perplexity for causal LM; accuracy for classification; entity F1 for token
 * classification).
 * @module
 */
import type { Batch, Model, ModelTask } from "../models/model.ts";
import { argmax, noGrad, type Tensor, Tensor as T, tidy } from "../tensor/mod.ts";
import { IGNORE_INDEX } from "../tensor/mod.ts";
import { BatchIterator, type Position, type TrainBatch } from "./batches.ts";
import { entityScores, isEntityTagSet, type TypeScores } from "./entities.ts";
import { loadInOrder } from "./image_data.ts";
import { f1, matthews, multiLabelScores, pearson, spearman } from "./metrics.ts";

/** The tasks the trainer runs: those of a model with a task head. */
export type TaskName = Exclude<ModelTask, "base">;

/** The tasks, for flag checking. */
export const TASKS: readonly TaskName[] = ["causal-lm", "seq-cls", "token-cls", "image-cls"];

/**
 * The task `who` runs `model` for: its head's, which `task`, when given, must name.
 * @throws Error when the model has no head (task "base") or `task` is another.
 */
export function headTask(model: Model, task: TaskName | undefined, who: string): TaskName {
  if (model.task === "base" || (task !== undefined && task !== model.task)) {
    throw new Error(
      `${who}: ${task === undefined ? "" : `task "${task}", but `}the model has ${
        model.task === "base" ? "no head (load it with a task)" : `a ${model.task} head`
      }`,
    );
  }
  return model.task;
}

/** A batch of preprocessed images [b, c, h, w] and their class ids. */
export interface ImageBatch {
  /** The images' floats, row-major [b, c, h, w]. */
  pixels: Float32Array;
  /** [b, c, h, w]: images, channels, height, width. */
  shape: [number, number, number, number];
  /** [b] class ids. */
  labels: Int32Array;
  /** The example index of each image. */
  rows: Int32Array;
}

/** A CPU batch of either kind. */
export type HostBatch = TrainBatch | ImageBatch;

/** Where the trainer's batches come from: any position of any epoch, reproducibly. */
export interface BatchSource {
  /** Examples (rows) in the split. */
  readonly size: number;
  /** Batches per epoch. */
  readonly stepsPerEpoch: number;
  /** The position of the `globalStep`-th batch counted from the start (0-based). */
  positionAt(globalStep: number): Position;
  /** The batch at `position` (made ready by {@link prepare} first, where the source has it). */
  batch(position: Position): HostBatch;
  /**
   * Make the batch at `position` ready for {@link batch}: a source that loads its rows per batch
   * (images decoded again for each) loads them here, and may be asked ahead, while the GPU runs
   * the step before. Absent where every batch is at hand.
   */
  prepare?(position: Position): Promise<void>;
}

/** The floats of one preprocessed image (c·h·w, channels first), or a function that makes them when a batch needs them. */
export type ImagePixels = Float32Array | (() => Float32Array);

/** Preprocessed images (each c·h·w floats, channels first) with class ids. */
export interface ImageExample {
  /** The image's pixels, held. */
  pixels: ImagePixels;
  /** The class id. */
  label: number;
}

/**
 * An image loaded again for each batch that takes it (a split too large to hold decoded): its
 * class id, and what decodes it.
 */
export interface StreamedImage {
  /** Decodes and preprocesses the image (ListedImage's load, lib/train/image_data.ts). */
  load: () => Promise<ImagePixels>;
  /** The class id. */
  label: number;
}

/**
 * Batches of images in the seeded epoch order of {@link BatchIterator}. Streamed images are loaded
 * by {@link prepare}, a few an image worker at a time (lib/io/image_workers.ts), and held only
 * until their batch is taken.
 */
export class ImageBatches implements BatchSource {
  /** Batches per epoch (the last one may be smaller). */
  readonly stepsPerEpoch: number;
  readonly #order: BatchIterator;
  /** The loads of the batches being prepared, by position ("epoch:step"). */
  readonly #loading = new Map<string, Promise<void>>();
  /** Those loaded, until their batch is taken. */
  readonly #loaded = new Map<string, Map<number, ImagePixels>>();

  /**
   * Batches of `batchSize` images of shape `imageShape` [c, h, w] (readImageData's
   * `ImageData.imageShape`, for images read so), shuffled per epoch with `seed` (default 0) unless
   * `shuffle` is false. A bad batch size or seed is a RangeError; no examples is a DataError.
   */
  constructor(
    readonly examples: readonly (ImageExample | StreamedImage)[],
    readonly imageShape: [number, number, number],
    readonly batchSize: number,
    opts: { seed?: number; shuffle?: boolean } = {},
  ) {
    // BatchIterator only orders row indices here; its dataset's rows are never read.
    const rows = { size: examples.length, padId: 0, row: () => ({ ids: [], label: 0 }) };
    this.#order = new BatchIterator(rows, { batchSize, seed: opts.seed, shuffle: opts.shuffle });
    this.stepsPerEpoch = this.#order.stepsPerEpoch;
  }

  get size(): number {
    return this.examples.length;
  }

  /** The position of the `globalStep`-th batch counted from the start (0-based). */
  positionAt(globalStep: number): Position {
    return this.#order.positionAt(globalStep);
  }

  /** Load the streamed images of the batch at `position` (once however often asked, until it is taken). */
  prepare(position: Position): Promise<void> {
    const key = `${position.epoch}:${position.step}`;
    if (this.#loaded.has(key)) return Promise.resolve();
    let loading = this.#loading.get(key);
    if (!loading) {
      const streamed = [...this.#rows(position)].filter((r) => !("pixels" in this.examples[r]));
      // a few an image worker under way; the error of the first failed in the batch's order
      loading = loadInOrder(streamed.map((r) => (this.examples[r] as StreamedImage).load))
        .then((pixels) => void this.#loaded.set(key, new Map(streamed.map((r, i) => [r, pixels[i]]))))
        .finally(() => this.#loading.delete(key));
      loading.catch(() => {}); // asked ahead and never awaited (the run stopped): no unhandled rejection
      this.#loading.set(key, loading);
    }
    return loading;
  }

  /** The batch at `position`; one holding streamed images must have been prepared ({@link prepare}). */
  batch(position: Position): ImageBatch {
    const rows = this.#rows(position), key = `${position.epoch}:${position.step}`;
    const loaded = this.#loaded.get(key);
    this.#loaded.delete(key);
    const [c, h, w] = this.imageShape, n = c * h * w;
    const pixels = new Float32Array(rows.length * n);
    const labels = new Int32Array(rows.length);
    rows.forEach((r, i) => {
      const example = this.examples[r];
      const p = "pixels" in example ? example.pixels : loaded?.get(r);
      if (p === undefined) {
        throw new Error(
          `ImageBatches: the batch at epoch ${position.epoch}, step ${position.step} streams its images: ` +
            `prepare it before taking it`,
        );
      }
      pixels.set(typeof p === "function" ? p() : p, i * n);
      labels[i] = example.label;
    });
    return { pixels, shape: [rows.length, c, h, w], labels, rows: Int32Array.from(rows) };
  }

  /** The example indices of the batch at a position. */
  #rows({ epoch, step }: Position): Int32Array {
    return this.#order.order(epoch).subarray(step * this.batchSize, (step + 1) * this.batchSize);
  }
}

/** True for an image batch. */
export function isImageBatch(b: HostBatch): b is ImageBatch {
  return "pixels" in b;
}

/** Tokens in a batch (real tokens, padding excluded); images count one each. */
export function batchTokens(b: HostBatch): number {
  if (isImageBatch(b)) return b.shape[0];
  let n = 0;
  for (const m of b.attentionMask) n += m;
  return n;
}

/**
 * The model inputs of a CPU batch (a {@link BatchIterator}'s or {@link ImageBatches}' batch) for
 * `task`, as `train` and {@link evaluate} feed them to `model.forward`: token ids (on the
 * GPU and their host copy), attention mask and token types, or pixels; the labels, shaped for
 * `task`, unless `withLabels` is false (prediction). The tensors are the caller's to dispose:
 * build the batch inside `tidy`, with the forward pass.
 * @throws Error when the batch's kind (tokens or images) does not fit `task`.
 */
export function toModelBatch(model: Model, b: HostBatch, task: TaskName, withLabels = true): Batch {
  const gpu = model.gpu;
  if (isImageBatch(b)) {
    if (task !== "image-cls") throw new Error(`an image batch cannot train task ${task}`);
    const pixelValues = T.from(gpu, b.pixels, b.shape);
    return withLabels ? { pixelValues, labels: T.from(gpu, b.labels, [b.shape[0]]) } : { pixelValues };
  }
  if (task === "image-cls") throw new Error(`task image-cls needs image data, got token rows`);
  const [rows, len] = b.shape;
  const batch: Batch = {
    inputIds: T.from(gpu, b.ids, [rows, len]),
    inputIdsHost: b.ids,
    attentionMask: b.attentionMask,
  };
  if (withLabels) {
    // a classifier's labels: one per row, or one 0/1 per label and row (multi-label)
    const perRow = b.labels.length / rows;
    const shape = task === "causal-lm" || task === "token-cls"
      ? [rows, len]
      : perRow === 1
      ? [rows]
      : [rows, perRow];
    batch.labels = T.from(gpu, b.labels, shape);
    if (task === "causal-lm") batch.nextTokenLabels = true;
  }
  if (b.tokenTypeIds) batch.tokenTypeIds = b.tokenTypeIds;
  return batch;
}

/** The training loss of `b` (a scalar tensor on the tape when gradients are on). */
export function batchLoss(model: Model, b: HostBatch, task: TaskName): Tensor {
  const out = model.forward(toModelBatch(model, b, task), { headOnly: true });
  if (!out.loss) throw new Error(`${model.family}: the forward pass returned no loss for task ${task}`);
  return out.loss;
}

/** Targets that count in a batch's loss: predicted or tagged tokens (causal LM, token classification) or rows. */
export function lossCount(b: HostBatch, task: TaskName): number {
  if ((task !== "causal-lm" && task !== "token-cls") || isImageBatch(b)) return b.shape[0];
  let n = 0;
  for (const l of b.labels) if (l !== IGNORE_INDEX) n++;
  return n;
}

/** What an evaluation measured. */
export interface EvalResult {
  /** Mean loss per target (token or example). */
  loss: number;
  /**
   * Token classification with entity tags (IOB2, IOBES, …): entities found with the right type
   * and span over entities predicted (seqeval's micro precision).
   */
  precision?: number;
  /** Token classification with entity tags: entities found over true entities (seqeval's recall). */
  recall?: number;
  /** Token classification with entity tags: precision, recall, F1 and support by entity type. */
  entities?: Record<string, TypeScores>;
  /** exp(loss), causal LM only. */
  perplexity?: number;
  /**
   * Share of the targets that are the model's most probable next token (TRL's
   * mean_token_accuracy, over all targets), causal LM only.
   */
  tokenAccuracy?: number;
  /**
   * Share of examples classified right, classification only; multi-label: with every label
   * right (a label is predicted where its logit is above 0, σ > 0.5); token classification: share
   * of the tagged words (their first tokens) tagged right.
   */
  accuracy?: number;
  /** Matthews correlation of the predicted and true classes (CoLA's metric), classification only. */
  mcc?: number;
  /**
   * F1 of class 1 (MRPC's and QQP's metric), two-class classification; for multi-label
   * classification the micro F1 over every (example, label); for token classification with
   * entity tags seqeval's entity F1.
   */
  f1?: number;
  /** Multi-label classification: the mean of the labels' F1 (macro). */
  f1Macro?: number;
  /** Pearson correlation of predictions and targets (STS-B's metric), regression only. */
  pearson?: number;
  /** Spearman correlation of predictions and targets, regression only. */
  spearman?: number;
  /** Examples evaluated. */
  examples: number;
  /** Targets the loss averages over. */
  targets: number;
}

/**
 * Evaluate `model` (in eval mode, no gradients) on `batches`: losses and logits are queued
 * for readback per batch and collected every few batches, so the GPU never waits per batch.
 * `taskName` defaults to the model's head (`model.task`); given, it must be that one.
 * `onBatch` hears the batches done so far, every few batches.
 */
export async function evaluate(
  model: Model,
  batches: Iterable<HostBatch> | AsyncIterable<HostBatch>,
  taskName?: TaskName,
  onBatch?: (done: number) => void,
): Promise<EvalResult> {
  const task = headTask(model, taskName, "evaluate");
  const wasTraining = model.training;
  model.train(false);
  let lossSum = 0, targets = 0, examples = 0, done = 0, rightTokens = 0;
  const scored: { logits: Float32Array; labels: Int32Array | Float32Array; rows: number }[] = [];
  const tagged: { pred: number[]; truth: number[] }[] = [];
  let pending: Promise<void>[] = [];
  try {
    for await (const b of batches) {
      const n = lossCount(b, task), rows = b.shape[0];
      const perToken = !isImageBatch(b) && (task === "causal-lm" || task === "token-cls");
      const labels = perToken ? null : b.labels;
      const tokenLabels = perToken ? b.labels as Int32Array : null;
      const reads = tidy(() =>
        noGrad(() => {
          const out = model.forward(toModelBatch(model, b, task), { headOnly: true });
          if (!out.loss) {
            throw new Error(`${model.family}: the forward pass returned no loss for task ${task}`);
          }
          return {
            loss: out.loss.readLater(),
            logits: labels ? out.logits.readLater() : null,
            // the most probable token (tag) of each row of logits: [B, T], or [targets] at the targets alone
            picks: tokenLabels ? argmax(out.logits).readLater() : null,
          };
        })
      );
      model.gpu.stream.flush();
      pending.push((async () => {
        const loss = (await reads.loss)[0];
        if (n > 0) lossSum += loss * n;
        targets += n;
        examples += rows;
        if (labels && reads.logits) scored.push({ logits: await reads.logits, labels, rows });
        if (task === "token-cls" && tokenLabels && reads.picks) {
          tagged.push(...taggedRows(await reads.picks, tokenLabels, rows));
        } else if (tokenLabels && reads.picks) {
          // awaited first: `x += await …` would read x before the wait and lose the other batches' counts
          const picks = await reads.picks;
          rightTokens += rightTokenCount(picks, tokenLabels);
        }
      })());
      done++;
      if (pending.length >= 8) {
        await Promise.all(pending);
        pending = [];
        onBatch?.(done);
      }
    }
    await Promise.all(pending);
    onBatch?.(done);
  } finally {
    model.train(wasTraining);
  }
  const loss = targets > 0 ? lossSum / targets : NaN;
  const result: EvalResult = { loss, examples, targets };
  if (task === "causal-lm") {
    result.perplexity = Math.exp(loss);
    if (targets > 0) result.tokenAccuracy = rightTokens / targets;
  } else if (task === "token-cls") {
    Object.assign(result, tagMetrics(tagged, model.config.labels));
  } else if (model.config.problemType === "multi_label_classification") {
    Object.assign(result, multiLabelMetrics(scored));
  } else Object.assign(result, predictionMetrics(scored));
  return result;
}

/**
 * How many next-token targets (`labels` [B·T], IGNORE_INDEX where nothing is learnt) the picked tokens
 * hit: `picks` holds one token per position, or one per target in order (the LM head at the
 * targets alone).
 */
function rightTokenCount(picks: Float32Array, labels: Int32Array): number {
  let right = 0, j = 0;
  const perPosition = picks.length === labels.length;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === IGNORE_INDEX) continue;
    if ((perPosition ? picks[i] : picks[j++]) === labels[i]) right++;
  }
  if (!perPosition && j !== picks.length) {
    throw new Error(`evaluate: ${picks.length} picked tokens for ${j} targets`);
  }
  return right;
}

/** Each row's picked and true tag ids at its tagged positions (labels −100 elsewhere). */
function taggedRows(
  picks: Float32Array,
  labels: Int32Array,
  rows: number,
): { pred: number[]; truth: number[] }[] {
  const len = labels.length / rows;
  return Array.from({ length: rows }, (_, r) => {
    const pred: number[] = [], truth: number[] = [];
    for (let i = r * len; i < (r + 1) * len; i++) {
      if (labels[i] === IGNORE_INDEX) continue;
      pred.push(picks[i]);
      truth.push(labels[i]);
    }
    return { pred, truth };
  });
}

/** transformers' placeholder name of output `i` (LABEL_i): the output names no tag. */
function isPlaceholder(name: string, i: number): boolean {
  return name === `LABEL_${i}`;
}

/**
 * Whether a token classifier with outputs named `names` is scored by entity (seqeval): its tag
 * names are entity tags (IOB2, IOBES, …), placeholders (LABEL_i: outputs of a kept head beyond
 * the data's tags) left out. `train` checks --best-metric with it, before the model loads.
 */
export function scoresEntities(names: readonly string[]): boolean {
  return isEntityTagSet(names.filter((n, i) => !isPlaceholder(n, i)));
}

/**
 * A token classifier's scores: the share of tags right (by id: a placeholder predicted for an O
 * word is wrong), and where the tag names are entity tags ({@link scoresEntities}) seqeval's entity
 * precision, recall and F1, a placeholder's tag read as "O".
 */
function tagMetrics(
  tagged: readonly { pred: number[]; truth: number[] }[],
  names: readonly string[],
): Partial<EvalResult> {
  let right = 0, all = 0;
  for (const { pred, truth } of tagged) {
    all += truth.length;
    right += pred.filter((p, i) => p === truth[i]).length;
  }
  const accuracy = all === 0 ? NaN : right / all;
  if (!scoresEntities(names)) return { accuracy };
  const tag = (id: number) => names[id] === undefined || isPlaceholder(names[id], id) ? "O" : names[id];
  const named = (ids: number[]) => ids.map(tag);
  const s = entityScores(tagged.map((t) => named(t.pred)), tagged.map((t) => named(t.truth)));
  return { accuracy, precision: s.precision, recall: s.recall, f1: s.f1, entities: s.byType };
}

/** A multi-label head's scores: each label predicted where its logit is above 0 (σ > 0.5). */
function multiLabelMetrics(
  scored: readonly { logits: Float32Array; labels: Int32Array | Float32Array; rows: number }[],
): Partial<EvalResult> {
  if (scored.length === 0) return { accuracy: NaN };
  const pred = scored.flatMap((s) => Array.from(s.logits, (x) => (x > 0 ? 1 : 0)));
  const truth = scored.flatMap((s) => Array.from(s.labels));
  return multiLabelScores(pred, truth, scored[0].logits.length / scored[0].rows);
}

/**
 * Accuracy, MCC and (two classes) F1 of the argmax of each row of logits; for a regression head
 * (one output, float targets) the Pearson and Spearman correlations of outputs and targets.
 */
function predictionMetrics(
  scored: readonly { logits: Float32Array; labels: Int32Array | Float32Array }[],
): Partial<EvalResult> {
  const truth = scored.flatMap((s) => Array.from(s.labels));
  if (truth.length === 0) return { accuracy: NaN };
  if (scored[0].labels instanceof Float32Array) {
    const out = scored.flatMap((s) => Array.from(s.logits));
    return truth.length < 2 ? {} : { pearson: pearson(out, truth), spearman: spearman(out, truth) };
  }
  const classes = scored[0].logits.length / scored[0].labels.length;
  const pred = scored.flatMap(({ logits, labels }) =>
    Array.from(labels, (_, i) => {
      const row = logits.subarray(i * classes, (i + 1) * classes);
      return row.indexOf(Math.max(...row));
    })
  );
  const right = pred.filter((p, i) => p === truth[i]).length;
  return {
    accuracy: right / truth.length,
    mcc: matthews(pred, truth),
    ...(classes === 2 ? { f1: f1(pred, truth) } : {}),
  };
}

/**
 * Every batch of one pass over a split, in order (for evaluation); a source that loads its batches
 * ({@link BatchSource.prepare}) loads the next one while this one is evaluated.
 */
export async function* inOrder(source: BatchSource): AsyncGenerator<HostBatch> {
  for (let step = 0; step < source.stepsPerEpoch; step++) {
    await source.prepare?.({ epoch: 0, step });
    if (step + 1 < source.stepsPerEpoch) source.prepare?.({ epoch: 0, step: step + 1 }).catch(() => {});
    yield source.batch({ epoch: 0, step });
  }
}
