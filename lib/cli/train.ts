/**
 * `hartley train`: fine-tune a model directory with SSH (or LoRA, FourierFT, full fine-tuning,
 * or the head alone) on labelled text, plain text or images; with a progress bar, a JSONL run
 * log, atomic checkpoints, exact `--resume`, and a checkpoint on Ctrl-C. With no options it
 * runs the demo: the embedded model (models/default) on SpamAssassin, the frozen model with
 * only its head trained against SSH + head for the same budget.
 * @module
 */
import { storageSummary } from "../models/storage.ts";
import type { WeightDtype } from "../nn/load.ts";
import type { LossOn } from "../train/instruct.ts";
import { join, resolve } from "node:path";
import { getGpu, type Gpu } from "../gpu/mod.ts";
import { type AttentionPath, withAttentionPath } from "../tensor/mod.ts";
import { loadModel, loadModelTokenizer } from "../models/load.ts";
import type { HfConfig } from "../io/hf_config.ts";
import { openCheckpoint } from "../io/safetensors.ts";
import { getFamily } from "../models/registry.ts";
import { checkCheckpoint, modelShapes } from "../models/shapes.ts";
import { unsavedHeadModules } from "../peft/targets.ts";
import type { Model } from "../models/model.ts";
import type { PeftModel } from "../peft/apply.ts";
import {
  adapterConfigToJson,
  FOURIERFT_DEFAULTS,
  type Init,
  LORA_DEFAULTS,
  type Selection,
  SSH_DEFAULTS,
} from "../peft/config.ts";
import { type Transform, TRANSFORMS } from "../spectral/transforms.ts";
import {
  type BestMetric,
  findCheckpoint,
  fingerprintChanges,
  loadCheckpoint,
  type TrainerState,
} from "../train/checkpoint.ts";
import { RunLog } from "../train/log.ts";
import { Progress } from "../train/progress.ts";
import { evaluate, inOrder, scoresEntities, TASKS } from "../train/tasks.ts";
import { DataError } from "../train/data_error.ts";
import {
  BEST_DIR,
  defaultMetric,
  describeEval,
  stepsForEpochs,
  train,
  type TrainResult,
} from "../train/trainer.ts";
import { explainDeviceError } from "./errors.ts";
import {
  ArgsError,
  ATTENTION_FLAG,
  CHECKPOINTING_FLAG,
  type CommandSpec,
  DEFAULT_MODEL,
  DTYPE_FLAG,
  FIELD_FLAGS,
  type FlagValues,
  listOf,
  LOSS_ON_FLAG,
  refuseUnused,
  SEED_MAX,
  TEMPLATE_KWARGS_FLAG,
  templateKwargs,
  withArgs,
} from "./args.ts";
import {
  adapterConfigOf,
  DEFAULT_HEAD_LR,
  DEFAULT_LR,
  headLrOf,
  type Method,
  METHOD_FLAGS,
  METHODS,
  prepareMethod,
} from "./method.ts";
import { loadingProgress, loadNoteLines } from "./loading.ts";
import { checkOutDir, clearOutDir, runArgs, shellLine, withSavedArgs } from "./run_dir.ts";
import { isBuiltinData, loadSplits } from "./setup.ts";
import {
  checkTaskFits,
  chooseTask,
  defaultData,
  ensurePadToken,
  readModelConfig,
  TASK_FLAGS,
  taskOfConfig,
} from "./task.ts";

const FLAGS = {
  model: {
    type: "string",
    default: DEFAULT_MODEL,
    arg: "DIR",
    help: "Hugging Face model directory to fine-tune",
  },
  data: {
    type: "string",
    arg: "PATH",
    help:
      "training data: .jsonl/.csv/.tsv/.parquet with text+label, tokens+ner_tags records or a .conll file " +
      "(token classification), .txt (or records' text without labels) " +
      "for causal LM, records with prompt+completion or messages (instruction tuning), " +
      "a folder of class folders (PNG/JPEG) or .parquet/.jsonl for images, or a built-in set: " +
      "spamassassin, brown [default: by task]",
  },
  "eval-data": {
    type: "string",
    arg: "PATH",
    help: "separate eval file (default: hold out --eval-fraction)",
  },
  "eval-fraction": {
    type: "number",
    default: 0.1,
    min: 0,
    max: 0.9,
    help: "share of --data held out for eval (the built-in sets' splits are fixed)",
  },
  task: { type: "string", choices: TASKS, help: "task [default: from the data and the model]" },
  method: { type: "string", choices: METHODS, default: "ssh", help: "fine-tuning method" },
  // the adapter flags default to the library's configs (lib/peft/config.ts), but --lora-alpha
  n: {
    type: "integer",
    min: 1,
    help: "SSH/FourierFT coefficients per layer " +
      `[default: ssh ${SSH_DEFAULTS.n}, fourierft ${FOURIERFT_DEFAULTS.nFrequency} (PEFT's n_frequency)]`,
  },
  "energy-ratio": {
    type: "number",
    default: SSH_DEFAULTS.energyRatio,
    min: 0,
    max: 1,
    help: "SSH share of positions chosen by energy",
  },
  alpha: {
    type: "number",
    above: 0,
    help:
      `SSH alpha (FourierFT scaling) [default: ssh ${SSH_DEFAULTS.alpha}, fourierft ${FOURIERFT_DEFAULTS.scaling}]`,
  },
  transform: {
    type: "string",
    choices: TRANSFORMS,
    default: SSH_DEFAULTS.transform,
    help: "SSH spectral transform",
  },
  selection: {
    type: "string",
    choices: ["layer", "global"],
    default: SSH_DEFAULTS.selection,
    help: "SSH position budget scope",
  },
  init: {
    type: "string",
    choices: ["normal", "zeros"],
    default: SSH_DEFAULTS.init,
    help: "SSH coefficient init",
  },
  "target-modules": {
    type: "string",
    arg: "LIST",
    help: "layers to adapt: comma-separated names, a regex, or all-linear [default: per family]",
  },
  r: { type: "integer", default: LORA_DEFAULTS.r, min: 1, help: "LoRA rank" },
  // deliberately not PEFT's lora_alpha 8 (LORA_DEFAULTS): 2·r, the usual setting (the README's flag list says 16)
  "lora-alpha": { type: "number", default: 16, above: 0, help: "LoRA alpha (PEFT's default: 8)" },
  "lora-dropout": {
    type: "number",
    default: LORA_DEFAULTS.loraDropout,
    min: 0,
    max: 0.99,
    help: "LoRA dropout",
  },
  epochs: { type: "number", default: 3, min: 0.001, help: "passes over the training data" },
  steps: { type: "integer", min: 1, help: "optimiser steps (overrides --epochs)" },
  "batch-size": { type: "integer", default: 16, min: 1, help: "examples per batch" },
  "grad-accum": {
    type: "integer",
    default: 1,
    min: 1,
    help: "batches whose gradients add up to one optimiser step (effective batch: batch-size × this)",
  },
  "seq-len": { type: "integer", default: 128, min: 2, help: "tokens per example (longer rows are cut)" },
  lr: {
    type: "number",
    above: 0,
    help:
      "learning rate of the adapter (or of every weight for full, the head too, unless --head-lr is given) " +
      "[default: ssh/fourierft 0.05, lora 5e-4, full 5e-5]",
  },
  "head-lr": {
    type: "number",
    min: 0,
    help: `learning rate of the task head [default: ${DEFAULT_HEAD_LR}; full: --lr]`,
  },
  schedule: {
    type: "string",
    choices: ["linear", "cosine", "constant"],
    default: "linear",
    help: "decay after warmup",
  },
  "warmup-ratio": {
    type: "number",
    default: 0.06,
    min: 0,
    max: 1,
    help: "share of steps of linear warmup (transformers' Trainer: 0)",
  },
  "weight-decay": {
    type: "number",
    default: 0,
    min: 0,
    help:
      "decoupled (AdamW) weight decay, of the weights but not the biases and norms, as transformers' Trainer",
  },
  "max-grad-norm": {
    type: "number",
    default: 1,
    min: 0,
    help: "clip gradients to this global norm (0: off)",
  },
  "eval-every": {
    type: "integer",
    default: 0,
    min: 0,
    help: "steps between evaluations (0: at the end only)",
  },
  "save-best": {
    type: "boolean",
    help: "keep the weights of the best evaluation in OUT/best (with --eval-every)",
  },
  "early-stop": {
    type: "integer",
    min: 1,
    arg: "N",
    help: "stop after N evaluations in a row that are not better (with --eval-every)",
  },
  "best-metric": {
    type: "string",
    choices: [
      "accuracy",
      "loss",
      "mcc",
      "f1",
      "f1-macro",
      "precision",
      "recall",
      "pearson",
      "spearman",
      "token-accuracy",
    ],
    help:
      "what --save-best and --early-stop compare [default: accuracy; f1 for entity tags; pearson for regression; loss for causal LM]",
  },
  "log-every": {
    type: "integer",
    default: 10,
    min: 1,
    help: "steps between train log lines, each the mean loss of its steps",
  },
  "save-every": {
    type: "integer",
    default: 200,
    min: 0,
    help: "steps between checkpoints (0: at the end only)",
  },
  seed: {
    type: "integer",
    default: 0,
    min: 0,
    max: SEED_MAX,
    help: "seed of data order, dropout, positions and init (FourierFT's positions: its random_loc_seed, " +
      `when given, else PEFT's ${FOURIERFT_DEFAULTS.randomLocSeed})`,
  },
  out: {
    type: "string",
    default: "runs/train",
    arg: "DIR",
    help: "output directory (adapter/ or model/, log.jsonl, checkpoint/, best/)",
  },
  resume: { type: "boolean", help: "continue the run in --out from its checkpoint" },
  "stop-at": {
    type: "integer",
    min: 1,
    help: "stop after this step with a checkpoint, as Ctrl-C does, exiting 0 (continue later with --resume)",
  },
  overwrite: { type: "boolean", help: "start over in an --out that already holds a run" },
  dtype: DTYPE_FLAG,
  attention: ATTENTION_FLAG,
  "gradient-checkpointing": CHECKPOINTING_FLAG,
  "max-train": {
    type: "integer",
    min: 1,
    help: "use only this many training examples (windows for causal LM)",
  },
  "max-eval": { type: "integer", min: 1, help: "evaluate on only this many examples" },
  ...FIELD_FLAGS,
  "loss-on": LOSS_ON_FLAG,
  "template-kwargs": TEMPLATE_KWARGS_FLAG,
  "group-by-length": {
    type: "boolean",
    help: "batch rows of similar length together (less padding; texts of varied lengths train faster)",
  },
  regression: {
    type: "boolean",
    help: "the labels are real values (e.g. STS-B): one output trained with mean squared error",
  },
  "new-head": {
    type: "boolean",
    help:
      "start a new classification head for the data's classes, dropping the checkpoint's (whether or not " +
      "its classes differ)",
  },
  demo: {
    type: "boolean",
    help: "also train the head alone for the same budget and compare held-out accuracy",
  },
  quiet: {
    type: "boolean",
    short: "q",
    help: "no progress bar, run header or evaluation lines (the closing lines stay)",
  },
} as const;

/** The options the demo runs with (measured to finish in under 5 minutes on 2 CPU cores). */
export const DEMO_ARGS: readonly string[] = [
  "--demo",
  "--model",
  DEFAULT_MODEL,
  "--data",
  "spamassassin",
  "--max-train",
  "2500",
  "--epochs",
  "1",
  "--batch-size",
  "16",
  "--seq-len",
  "32",
  "--target-modules",
  "all-linear",
  "--n",
  "500",
  "--alpha",
  "50",
  "--init",
  "zeros",
  "--lr",
  "0.1",
  "--head-lr",
  "0.002",
  "--out",
  "runs/demo",
  "--overwrite",
];

function demoArgsText(): string {
  return DEMO_ARGS.filter((a) => a !== "--demo" && a !== "--overwrite").join(" ");
}

const SPEC: CommandSpec<typeof FLAGS> = {
  name: "train",
  summary: "Fine-tune a model with SSH (or LoRA, FourierFT, full, head only). With no options: the demo.",
  flags: FLAGS,
  notes: [
    "With no options at all, runs the demo: the embedded model in models/default, SSH on SpamAssassin",
    `(${demoArgsText()}),`,
    "and prints `demo: held-out accuracy X -> Y` (X: head only, Y: SSH + head, same steps).",
    "",
    "examples:",
    "  deno run -A cli.ts train --model models/default --data spamassassin --n 200 --alpha 300 --out runs/spam",
    "  deno run -A cli.ts train --resume --out runs/spam",
    "  deno run -A cli.ts train --model m --data notes.txt --task causal-lm --method lora --r 8",
    "  deno run -A cli.ts train --model ~/models/Qwen2.5-0.5B-Instruct --data sft.jsonl --seq-len 512 --group-by-length",
  ].join("\n"),
};

type Values = FlagValues<typeof FLAGS>;

/**
 * `hartley train`; `as` names another command run through it (pretrain), for its messages: its
 * name, the flags advice may name, and the command that continues a stopped run.
 */
export async function trainCommand(
  args: string[],
  as?: { name: string; flags: readonly string[]; resume: string },
): Promise<number> {
  if (args.length === 0) {
    console.error(`no options: running the demo (train ${DEMO_ARGS.join(" ")})`);
    args = [...DEMO_ARGS];
  }
  const started = args;
  args = await withSavedArgs(args, FLAGS.out.default);
  const spec = as ? { ...SPEC, name: as.name, adviceFlags: as.flags } : SPEC;
  return withArgs(spec, args, (v, _, given) =>
    withAttentionPath(v.attention as AttentionPath, async () => {
      if (given.has("eval-fraction") && v["eval-data"]) {
        throw new ArgsError(`--eval-fraction holds out part of --data; with --eval-data nothing is held out`);
      }
      if (given.has("eval-fraction") && (v.data === undefined || isBuiltinData(v.data))) {
        throw new ArgsError(
          `--eval-fraction does not apply to ${v.data ? `--data ${v.data}` : "the built-in data"}, ` +
            `whose held-out split is fixed (SpamAssassin's 20%, the Brown corpus's last 5%)`,
        );
      }
      refuseUnused(given, METHOD_FLAGS, v.method, `--method ${v.method}`);
      const gpu = await getGpu();
      const flags = spec.adviceFlags ?? Object.keys(FLAGS);
      if (!v.demo) {
        // train's own options are in the checkpoint: --out alone finds them
        const resume = as?.resume ?? `deno run -A cli.ts ${shellLine(["train", "--resume", "--out", v.out])}`;
        return (await runTraining(gpu, v, given, flags, resume, v.resume ? undefined : started)).code;
      }
      if (v.resume) throw new ArgsError(`--demo cannot be combined with --resume`);
      const base = v.out;
      // the head-only baseline takes the compared method's flags, checked for that method above
      const head = await runTraining(
        gpu,
        { ...v, method: "head", out: join(base, "head-only") },
        new Set(),
        flags,
        null,
      );
      if (head.code !== 0) return head.code;
      const tuned = await runTraining(gpu, { ...v, out: join(base, v.method) }, given, flags, null);
      if (tuned.code !== 0) return tuned.code;
      const x = head.accuracy, y = tuned.accuracy;
      if (x === undefined || y === undefined) {
        throw new Error(`the demo needs a classification task with eval data`);
      }
      console.log(`demo: held-out accuracy ${x.toFixed(4)} -> ${y.toFixed(4)}`);
      return 0;
    }));
}

/**
 * The names of every output of the head: the data's class names, and where a kept head has more
 * outputs than the data has classes, transformers' placeholders (LABEL_i) for the rest, so that
 * the saved adapter names them all and evaluation maps the classes as training did.
 */
function outputNames(splits: { labelNames?: string[]; numLabels?: number }): string[] | undefined {
  const names = splits.labelNames, count = splits.numLabels ?? 0;
  if (!names || names.length > count) return undefined;
  return [...names, ...Array.from({ length: count - names.length }, (_, i) => `LABEL_${names.length + i}`)];
}

/**
 * The modules an adapter trains in full beside the head PEFT saves by itself: the head's other
 * parts (DistilBERT's pre_classifier, named though PEFT's suffix match covers it), and a pooler the checkpoint lacks (a masked LM's), which
 * starts new and would otherwise stay random.
 */
async function headModulesOf(dir: string, config: HfConfig, architecture: string): Promise<string[]> {
  const shapes = modelShapes(config, { architecture });
  const modules = unsavedHeadModules(shapes);
  const match = checkCheckpoint(shapes, await openCheckpoint(dir), config.architectures[0]);
  if (match.missingHead.some((k) => k.endsWith("pooler.dense.weight"))) {
    modules.push(`${shapes.basePrefix}pooler`);
  }
  return modules;
}

/**
 * One training run; resolves to the exit code and the final held-out accuracy, if any. `given`:
 * the flags given, refused where the task does not use them. Device errors become advice naming
 * `flags` alone. `resume`: the command that continues the run once stopped (null: the demo's runs,
 * which start over).
 */
async function runTraining(
  gpu: Gpu,
  v: Values,
  given: ReadonlySet<string>,
  flags: readonly string[],
  resume: string | null,
  started?: string[],
): Promise<{ code: number; accuracy?: number }> {
  const method = v.method as Method;
  const outDir = v.out;
  await checkOutDir(outDir, v.resume, v.overwrite);
  const config = await readModelConfig(v.model);
  const data = v.data ?? defaultData(await chooseTask(v.task, "", config));
  const task = await chooseTask(v.task, data, config, v["label-field"]);
  checkTaskFits(task, config, v.model, v.task ? "flag" : "default");
  if (method === "full" && v.dtype !== "f32") {
    throw new ArgsError(
      `--method full trains every weight, in f32: --dtype ${v.dtype} stores frozen weights (use it with ssh, lora, fourierft or head)`,
    );
  }
  if (task === "causal-lm" && method === "head") {
    throw new ArgsError(
      `--method head trains a classification head; a causal LM has none (use ssh, lora, fourierft or full)`,
    );
  }
  if (
    v["eval-fraction"] === 0 && !v["eval-data"] && !isBuiltinData(data) &&
    (v["eval-every"] || v["save-best"] || v["early-stop"])
  ) {
    throw new ArgsError(
      `--eval-every, --save-best and --early-stop need eval data: --eval-data FILE or --eval-fraction above 0`,
    );
  }
  if (v["early-stop"] && !v["eval-every"]) {
    throw new ArgsError(`--early-stop counts evaluations: give --eval-every STEPS too`);
  }
  if (v["save-best"] && !v["eval-every"]) {
    throw new ArgsError(
      `--save-best keeps the best of the evaluations every --eval-every STEPS: give --eval-every too ` +
        `(without it the run is evaluated once, at the end, and its output is those weights)`,
    );
  }
  if (v["best-metric"] && !v["save-best"] && !v["early-stop"]) {
    throw new ArgsError(`--best-metric chooses what --save-best and --early-stop compare: give one of them`);
  }
  const tokenizer = config.modelType === "vit" ? null : await loadModelTokenizer(config);
  const architecture = getFamily(config.modelType)?.architectures[task];
  if (v["new-head"] && task === "causal-lm") throw new ArgsError(`--new-head is for a classifier's head`);
  // a head for this task is kept (the data must fit its classes) unless a new one is asked for
  const existingHead = taskOfConfig(config) === task && task !== "causal-lm" && !v["new-head"]
    ? config.labels.length
    : undefined;
  if (v.regression && task !== "seq-cls") {
    throw new ArgsError(`--regression trains a sequence classifier's head (the task here is ${task})`);
  }
  refuseUnused(given, TASK_FLAGS, task, `task ${task}`);
  // real-valued labels: asked for, or the model's head is a regression head already (a new head's
  // problem type comes from the data and --regression alone: the old one goes with its head)
  const regressor = v["new-head"]
    ? null
    : config.problemType === "regression"
    ? `${join(v.model, "config.json")} has problem_type "regression"`
    : existingHead === 1
    ? `${v.model}'s head has one output`
    : null;
  const regression = task === "seq-cls" && (v.regression || regressor !== null);
  const splits = await loadSplits(
    {
      task,
      data,
      evalData: v["eval-data"],
      evalFraction: v["eval-fraction"],
      seqLen: v["seq-len"],
      batchSize: v["batch-size"],
      seed: v.seed,
      maxTrain: v["max-train"],
      maxEval: v["max-eval"],
      textField: v["text-field"],
      pairField: v["pair-field"],
      lossOn: v["loss-on"] as LossOn,
      templateVariables: templateKwargs(v["template-kwargs"]),
      groupByLength: v["group-by-length"],
      quiet: v.quiet,
      labelField: v["label-field"],
      regression,
      // from v, not the flags given: a resumed run's come from its saved arguments
      evalFor: (["eval-every", "save-best", "early-stop"] as const).filter((f) => v[f]).map((f) => `--${f}`),
    },
    config,
    tokenizer,
    v.model,
    existingHead,
  ).catch((e) => {
    if (!(e instanceof DataError)) throw e;
    // labels read as real values without --regression: say why, and how to train classes instead
    if (regression && !v.regression && regressor) {
      throw new DataError(
        `${e.message} (the labels are read as real values: ${regressor}; --new-head trains a new head ` +
          `for the data's classes)`,
      );
    }
    // classes the kept head does not name: say how to start a head for them
    const misfit = / is not one of |does not fit the head's|needs a one-output head/;
    if (existingHead !== undefined && misfit.test(e.message)) {
      throw new DataError(`${e.message}; --new-head trains a new head for the data's classes`);
    }
    throw e;
  });
  const metric = v["best-metric"] && metricKey(v["best-metric"]);
  // the head's output names, which name the evaluations' classes and tags
  const names = outputNames(splits);
  // the evaluation fields a run reports, by flag name
  const scored = task === "causal-lm"
    ? ["loss", "token-accuracy"]
    : task === "token-cls"
    ? ["loss", "accuracy", ...(scoresEntities(names ?? []) ? ["f1", "precision", "recall"] : [])]
    : regression
    ? ["loss", "pearson", "spearman"]
    : splits.multiLabel
    ? ["loss", "accuracy", "f1", "f1-macro"]
    : ["loss", "accuracy", "mcc", ...(splits.numLabels === 2 ? ["f1"] : [])];
  if (v["best-metric"] && !scored.includes(v["best-metric"])) {
    throw new ArgsError(
      `--best-metric ${v["best-metric"]}: this run's evaluations report ${scored.join(", ")} ` +
        `(${
          task === "causal-lm"
            ? "a causal LM"
            : task === "token-cls"
            ? "token classification; f1, precision and recall need entity tags (B-, I-, …)"
            : regression
            ? "regression"
            : `${splits.numLabels} ${splits.multiLabel ? "labels, multi-label" : "classes"}`
        })`,
    );
  }
  const accumulate = v["grad-accum"];
  const totalSteps = v.steps ?? stepsForEpochs(v.epochs, splits.train.stepsPerEpoch, accumulate);
  const lr = v.lr ?? DEFAULT_LR[method];
  const headLr = headLrOf(method, lr, v["head-lr"]);
  const methodOptions = {
    method,
    task,
    n: v.n,
    energyRatio: v["energy-ratio"],
    alpha: v.alpha,
    transform: v.transform as Transform,
    selection: v.selection as Selection,
    init: v.init as Init,
    r: v.r,
    loraAlpha: v["lora-alpha"],
    loraDropout: v["lora-dropout"],
    // none given: the family's defaults, which the saved adapter names (PeftModel.save)
    targetModules: targetModulesOf(v["target-modules"]),
    seed: v.seed,
    randomLocSeed: given.has("seed") ? v.seed : undefined,
    lr,
    headLr,
    weightDecay: v["weight-decay"],
    modelDir: v.model,
    headModules: architecture ? await headModulesOf(v.model, config, architecture) : [],
    labelNames: names,
  };
  const adapterConfig = adapterConfigOf(methodOptions, v.model);
  const fingerprint: Record<string, unknown> = {
    model: resolve(v.model),
    task,
    method,
    adapter: adapterConfig ? adapterConfigToJson(adapterConfig) : null,
    data: isBuiltinData(data) ? data : resolve(data),
    evalData: v["eval-data"] ? resolve(v["eval-data"]) : null,
    evalFraction: v["eval-fraction"],
    seqLen: v["seq-len"],
    batchSize: v["batch-size"],
    // steps that stop at each epoch's end (a run started before they did cannot resume with them)
    ...(accumulate > 1 ? { gradAccum: accumulate, accumulation: "by-epoch" } : {}),
    ...(regression ? { regression } : {}),
    ...(v["new-head"] ? { newHead: true } : {}),
    ...(v["early-stop"] ? { earlyStop: v["early-stop"] } : {}),
    // the best evaluation is compared across sessions: on the same examples, as often
    ...(v["early-stop"] || v["save-best"]
      ? { bestMetric: metric ?? null, evalEvery: v["eval-every"], maxEval: v["max-eval"] ?? null }
      : {}),
    lr,
    headLr,
    schedule: v.schedule,
    warmupRatio: v["warmup-ratio"],
    weightDecay: v["weight-decay"],
    maxGradNorm: v["max-grad-norm"],
    seed: v.seed,
    dtype: v.dtype,
    maxTrain: v["max-train"] ?? null,
    totalSteps,
    // what shapes the examples, where set (fingerprints of runs started without them stay equal)
    ...(v["text-field"] ? { textField: v["text-field"] } : {}),
    ...(v["pair-field"] ? { pairField: v["pair-field"] } : {}),
    ...(v["label-field"] ? { labelField: v["label-field"] } : {}),
    ...(v["loss-on"] !== "completion" ? { lossOn: v["loss-on"] } : {}),
    ...(v["template-kwargs"] ? { templateVariables: templateKwargs(v["template-kwargs"]) } : {}),
    ...(v["group-by-length"] ? { groupByLength: true } : {}),
  };
  const ckpt = v.resume ? await loadCheckpoint(outDir) : undefined;
  if (ckpt) checkResume(ckpt.state, fingerprint, outDir, v["stop-at"]);
  // a resumed full run's weights are all trained: its checkpoint's model/ is the model
  const modelDir = ckpt && method === "full" ? join(ckpt.dir, "model") : v.model;
  let model: Model | null = null;
  let peft: PeftModel | null = null;
  let runLog = null as RunLog | null;
  const stopper = listenForStop(outDir);
  try {
    model = await loadModel(gpu, modelDir, {
      task,
      numLabels: task === "causal-lm" ? undefined : splits.numLabels,
      dtype: v.dtype as WeightDtype,
      seed: v.seed,
      // a head for the data's classes, even where the checkpoint's has as many (a resumed run's
      // trained head comes from its checkpoint)
      newHead: v["new-head"] && !ckpt,
      onProgress: loadingProgress(v.quiet),
      onLoaded: (notes) => {
        if (!v.quiet) { for (const line of loadNoteLines(notes)) console.error(line); }
      },
    });
    model.gradientCheckpointing = v["gradient-checkpointing"];
    // the data's class names name the head's outputs (a token classifier's evaluations read entities from them)
    if (names) model.config.labels = names;
    // a new head's problem type is the data's: one the config names is replaced outright (the saved
    // config.json would keep it otherwise)
    if (v["new-head"] && model.config.problemType) model.config.problemType = "single_label_classification";
    if (regression) model.config.problemType = "regression";
    if (splits.multiLabel) model.config.problemType = "multi_label_classification";
    else if (model.config.problemType === "multi_label_classification") {
      throw new ArgsError(
        `${v.model} has a multi-label head (problem_type "multi_label_classification"): ` +
          `give each example a list of labels (JSONL or Parquet)`,
      );
    }
    ensurePadToken(model.config, task, tokenizer);
    const prepared = await prepareMethod(
      model,
      methodOptions,
      ckpt && method !== "full" ? ckpt.dir : undefined,
    );
    peft = prepared.peft;
    // as transformers' TrainingArguments.get_warmup_steps counts them
    const warmupSteps = Math.ceil(v["warmup-ratio"] * totalSteps);
    const header = [
      `model ${v.model} (${config.modelType}, ${task})${ckpt ? `, resuming at step ${ckpt.state.step}` : ""}`,
      `storage ${storageSummary(model)}`,
      `data  ${splits.summary}`,
      `method ${method}: ${prepared.trainable} trainable values; ${totalSteps} steps of ${v["batch-size"]}` +
      `${accumulate > 1 ? ` × ${accumulate} batches` : ""}, ` +
      `lr ${lr}${task === "causal-lm" ? "" : `, head lr ${headLr}`}, ${v.schedule} schedule, ` +
      `warmup ${warmupSteps}`,
    ];
    if (!v.quiet) { for (const line of header) console.error(line); }
    // a kept head with outputs the data's classes leave unused: training goes on, but say so
    const classes = splits.labelNames?.length ?? 0;
    if (existingHead !== undefined && classes > 0 && classes < existingHead && !splits.multiLabel) {
      console.error(
        `note: the model's head has ${existingHead} outputs and the data ${classes} classes, which take ids ` +
          `0..${classes - 1}; --new-head starts a ${classes}-class head instead`,
      );
    }
    // the data, the model and the flags are checked: only now does --overwrite remove the old run
    if (v.overwrite && !ckpt) await clearOutDir(outDir);
    const log = runLog = await RunLog.open(join(outDir, "log.jsonl"), { resumeAt: ckpt?.state.step })
      .catch((e) => {
        throw new ArgsError(`--out ${outDir}: cannot write the run there (${(e as Error).message})`);
      });
    if (!ckpt) {
      await log.write({ type: "start", step: 0, ...fingerprint, trainable: prepared.trainable, version: 1 });
    } else await log.write({ type: "resume", step: ckpt.state.step });
    const progress = new Progress(totalSteps, {
      label: method,
      unit: task === "image-cls" ? "img" : "tok",
      silent: v.quiet,
      startStep: ckpt?.state.step ?? 0,
    });
    const evalSource = splits.eval;
    const evaluateFn = evalSource ? () => evaluate(model!, inOrder(evalSource), task) : undefined;
    let result: TrainResult;
    try {
      result = await train({
        model,
        task,
        data: splits.train,
        groups: prepared.groups,
        totalSteps,
        accumulate,
        warmupSteps,
        decay: v.schedule as "linear" | "cosine" | "constant",
        maxGradNorm: v["max-grad-norm"] > 0 ? v["max-grad-norm"] : undefined,
        seed: v.seed,
        logEvery: v["log-every"],
        evalEvery: v["eval-every"],
        evaluate: evaluateFn,
        outDir,
        saveEvery: v["save-every"],
        writeWeights: prepared.writeWeights,
        // best/ is an output, as the run's own: in the source's dtypes (a checkpoint keeps F32)
        writeBest: async (dir) => void await prepared.saveFinal(dir),
        fingerprint,
        args: started ? runArgs(started) : undefined,
        resumeFrom: ckpt,
        log,
        progress,
        setTraining: prepared.peft ? (on) => prepared.peft!.train(on) : undefined,
        shouldStop: (done) => stopper.signal !== null || done === v["stop-at"],
        best: v["save-best"] || v["early-stop"]
          ? {
            metric: metric as BestMetric | undefined,
            save: v["save-best"],
            patience: v["early-stop"],
          }
          : undefined,
      });
    } catch (e) {
      // --method full trains in f32 alone: no --dtype to suggest
      throw explainDeviceError(e, flags.filter((f) => !(f === "dtype" && method === "full")));
    }
    if (result.status === "stopped") {
      await log.write({ type: "end", step: result.steps, status: "stopped" });
      console.error(
        `stopped at step ${result.steps}; ` +
          (resume
            ? `checkpoint in ${join(outDir, "checkpoint")}. Continue with: ${resume}`
            : "the demo does not resume: run it again to start over"),
      );
      // a signal exits as an interrupt does; a stop --stop-at planned is a success
      return { code: stopper.signal ? STOP_SIGNALS[stopper.signal].status : 0 };
    }
    const saved = await prepared.saveFinal(outDir);
    const last = result.evals[result.evals.length - 1];
    await log.write({
      type: "end",
      step: result.steps,
      status: result.status,
      seconds: result.seconds,
      output: saved,
    });
    // the closing lines, --quiet or not: what was saved and how it scored
    if (result.status === "early") console.error(`stopped early at step ${result.steps} of ${totalSteps}`);
    console.error(`saved ${saved} (${result.seconds.toFixed(1)} s, ${result.tokens} tokens this session)`);
    if (last) console.error(`held-out: ${describeEval(last)}`);
    const b = result.best;
    if (!b && last && (v["save-best"] || v["early-stop"])) {
      const name = metricName(metric ?? defaultMetric(last));
      console.error(`no best held-out ${name}: every evaluation's was NaN`);
    }
    if (b) {
      console.error(
        `best held-out ${metricName(b.metric)} ${b.value.toFixed(4)} ` +
          `at step ${b.step}` +
          (v["save-best"] ? ` (weights in ${join(outDir, BEST_DIR)})` : ""),
      );
    }
    return { code: 0, accuracy: last?.accuracy };
  } finally {
    stopper.remove();
    runLog?.close();
    peft?.detach();
    model?.dispose();
  }
}

/** The signals that stop a run after its step: what to call each, and the exit status (128 + its number). */
const STOP_SIGNALS = {
  SIGINT: { label: "Ctrl-C", status: 130 },
  SIGTERM: { label: "SIGTERM", status: 143 },
} as const;
type StopSignal = keyof typeof STOP_SIGNALS;

/**
 * Listen for Ctrl-C and SIGTERM (a scheduler's preemption, `timeout`) during a run in `outDir`:
 * the first asks the run to stop after its step with a checkpoint (`signal` tells which came); a
 * second exits at once. `remove()` stops listening.
 */
function listenForStop(outDir: string): { readonly signal: StopSignal | null; remove(): void } {
  let signal: StopSignal | null = null;
  const handlers = new Map<StopSignal, () => void>();
  for (const name of Object.keys(STOP_SIGNALS) as StopSignal[]) {
    // Windows lets a program listen for SIGINT and SIGBREAK alone
    if (name === "SIGTERM" && Deno.build.os === "windows") continue;
    const { label, status } = STOP_SIGNALS[name];
    const handler = async () => {
      if (signal) {
        // the run may be writing its first checkpoint: say whether there is one to resume from
        const kept = await findCheckpoint(outDir).catch(() => null);
        console.error(
          kept
            ? `\nsecond ${label}: exiting without a new checkpoint (the last one is kept)`
            : `\nsecond ${label}: exiting; no checkpoint was written yet (start the run again, without --resume)`,
        );
        Deno.exit(status);
      }
      signal = name;
      console.error(
        `\n${label}: stopping after this step and saving a checkpoint (once this shows, Ctrl-C again quits ` +
          "without one)",
      );
    };
    Deno.addSignalListener(name, handler);
    handlers.set(name, handler);
  }
  return {
    get signal() {
      return signal;
    },
    remove: () => handlers.forEach((handler, name) => Deno.removeSignalListener(name, handler)),
  };
}

/** Settings a checkpoint written before they were fingerprinted lacks: any value resumes it. */
const LATER_SETTINGS = ["evalEvery", "maxEval"];

/** Refuse to resume the run of `state` with other settings, or with a --stop-at it is past. */
function checkResume(
  state: TrainerState,
  fingerprint: Record<string, unknown>,
  outDir: string,
  stopAt: number | undefined,
): void {
  const saved = state.fingerprint;
  const changes = fingerprintChanges(saved, fingerprint, LATER_SETTINGS.filter((k) => !(k in saved)));
  if (changes.length > 0) {
    throw new ArgsError(
      `--resume: the run in ${outDir} was started with other settings; resume with the same options ` +
        `(differences: ${changes.join("; ")})`,
    );
  }
  if (stopAt !== undefined && stopAt <= state.step) {
    throw new ArgsError(
      `--stop-at ${stopAt}: the run in ${outDir} resumes at step ${state.step} (its checkpoint's); ` +
        `give a later step, or none to train to the end`,
    );
  }
}

function targetModulesOf(flag: string | undefined): string[] | string | undefined {
  if (flag === undefined) return undefined;
  if (flag === "all-linear" || /[\\^$*+?()[\]{}|]/.test(flag)) return flag;
  return listOf(flag);
}

/** An evaluation field's name in words: `tokenAccuracy` → `token accuracy`. */
function metricName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`);
}

/** `--best-metric`'s name of an evaluation's field: `f1-macro` → `f1Macro`, `token-accuracy` → `tokenAccuracy`. */
function metricKey(flag: string): string {
  return flag.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
}
