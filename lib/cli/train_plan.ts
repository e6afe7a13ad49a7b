/**
 * What a `hartley train` run will do, settled before any weights load: its flags checked
 * against each other, the task, the model's head, the data's splits, the method's options and
 * the fingerprint a resumed run must match.
 * @module
 */
import type { LossOn } from "../train/instruct.ts";
import { join, resolve } from "node:path";
import { loadModelTokenizer } from "../models/load.ts";
import type { HfConfig } from "../io/hf_config.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import { openCheckpoint } from "../io/safetensors.ts";
import { getFamily } from "../models/registry.ts";
import { checkCheckpoint, modelShapes } from "../models/shapes.ts";
import { unsavedHeadModules } from "../peft/targets.ts";
import { adapterConfigToJson, type Init, type Selection } from "../peft/config.ts";
import type { Transform } from "../spectral/transforms.ts";
import { fingerprintChanges, type TrainerState } from "../train/checkpoint.ts";
import { scoresEntities, type TaskName } from "../train/tasks.ts";
import { DataError } from "../train/data_error.ts";
import { stepsForEpochs } from "../train/trainer.ts";
import { ArgsError, checkShipped, listOf, refuseUnused, templateKwargs } from "./args.ts";
import { parseBytes } from "./environment.ts";
import { adapterConfigOf, DEFAULT_LR, headLrOf, type Method, type MethodOptions } from "./method.ts";
import { checkOutDir, savedSettings } from "./run_dir.ts";
import { isBuiltinData, loadSplits, type Splits } from "./setup.ts";
import { checkTaskFits, chooseTask, defaultData, readModelConfig, TASK_FLAGS, taskOfConfig } from "./task.ts";
import type { TrainValues } from "./train_flags.ts";

/** A training run's settings, resolved from its flags and checked. */
export interface TrainPlan {
  method: Method;
  task: TaskName;
  config: HfConfig;
  /** Null for ViT. */
  tokenizer: Tokenizer | null;
  head: HeadChoice;
  splits: Splits;
  /** The head's output names, which name the evaluations' classes and tags. */
  names: string[] | undefined;
  /** The evaluation field `--best-metric` names. */
  metric: string | undefined;
  /** Batches whose gradients add up to one optimiser step. */
  accumulate: number;
  totalSteps: number;
  lr: number;
  headLr: number;
  methodOptions: MethodOptions;
  /** The settings a resumed run must share. */
  fingerprint: Record<string, unknown>;
}

/** The model's head a run trains: kept or new, and whether its labels are real values. */
export interface HeadChoice {
  /** The outputs of the model's head, kept for this task (undefined: a new head, or none). */
  existingHead: number | undefined;
  /** What makes the labels real values besides `--regression`, in words (null: nothing). */
  regressor: string | null;
  /** The labels are real values: one output trained with mean squared error. */
  regression: boolean;
}

/**
 * Settle the run of `v`: check its output directory and flags, choose its task and head, read the
 * model's config and tokenizer and the data, and resolve the method's options and the fingerprint.
 * `given`: the flags given, refused where the task does not use them.
 */
export async function planRun(v: TrainValues, given: ReadonlySet<string>): Promise<TrainPlan> {
  const method = v.method as Method;
  const reads = {
    model: v.model,
    data: isBuiltinData(v.data) ? undefined : v.data,
    "eval-data": v["eval-data"],
  };
  await checkOutDir(v.out, v.resume, v.overwrite, reads);
  checkShipped("model", v.model, "DIR");
  const config = await readModelConfig(v.model);
  const data = v.data ?? defaultData(await chooseTask(v.task, "", config));
  const task = await chooseTask(v.task, data, config, v["label-field"]);
  checkTaskFits(task, config, v.model, v.task ? "flag" : "default");
  checkRunFlags(v, method, task, data);
  const tokenizer = config.modelType === "vit" ? null : await loadModelTokenizer(config);
  const architecture = getFamily(config.modelType)?.architectures[task];
  const head = chooseHead(v, config, task);
  refuseUnused(given, TASK_FLAGS, task, `task ${task}`);
  // a resumed run's data is read as the run it continues read it
  const resumed = v.resume ? await savedSettings(v.out) : null;
  const splits = await loadRunSplits(v, task, data, config, tokenizer, head, resumed);
  const metric = v["best-metric"] && metricKey(v["best-metric"]);
  // the head's output names, which name the evaluations' classes and tags
  const names = outputNames(splits);
  checkBestMetric(v["best-metric"], task, head.regression, splits, names);
  const accumulate = v["grad-accum"];
  const totalSteps = v.steps ?? stepsForEpochs(v.epochs, splits.train.stepsPerEpoch, accumulate);
  const lr = v.lr ?? DEFAULT_LR[method];
  const headLr = headLrOf(method, lr, v["head-lr"]);
  const methodOptions: MethodOptions = {
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
  const fingerprint = fingerprintOf(v, data, methodOptions, head.regression, metric, totalSteps);
  return {
    method,
    task,
    config,
    tokenizer,
    head,
    splits,
    names,
    metric,
    accumulate,
    totalSteps,
    lr,
    headLr,
    methodOptions,
    fingerprint,
  };
}

/** Refuse flags that do not go together, or with the method, the task or the data. */
function checkRunFlags(v: TrainValues, method: Method, task: TaskName, data: string): void {
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
}

/** Whether the run keeps the model's head for `task`, and whether that head regresses. */
function chooseHead(v: TrainValues, config: HfConfig, task: TaskName): HeadChoice {
  if (v["new-head"] && task === "causal-lm") throw new ArgsError(`--new-head is for a classifier's head`);
  // a head for this task is kept (the data must fit its classes) unless a new one is asked for
  const existingHead = taskOfConfig(config) === task && task !== "causal-lm" && !v["new-head"]
    ? config.labels.length
    : undefined;
  if (v.regression && task !== "seq-cls") {
    throw new ArgsError(`--regression trains a sequence classifier's head (the task here is ${task})`);
  }
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
  return { existingHead, regressor, regression };
}

/**
 * Read the run's train and eval data, with advice where it does not fit the model's head.
 * `resumed`: the settings of the run a resumed run continues.
 */
async function loadRunSplits(
  v: TrainValues,
  task: TaskName,
  data: string,
  config: HfConfig,
  tokenizer: Tokenizer | null,
  { existingHead, regressor, regression }: HeadChoice,
  resumed: Record<string, unknown> | null,
): Promise<Splits> {
  return await loadSplits(
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
      imageMemory: v["image-memory"] === undefined
        ? undefined
        : parseBytes(v["image-memory"], "--image-memory"),
      quiet: v.quiet,
      labelField: v["label-field"],
      regression,
      // from v, not the flags given: a resumed run's come from its saved arguments
      evalFor: (["eval-every", "save-best", "early-stop"] as const).filter((f) => v[f]).map((f) => `--${f}`),
      resumedSettings: resumed ?? undefined,
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
}

/** Refuse a `--best-metric` (`flag`) the run's evaluations do not report. */
function checkBestMetric(
  flag: string | undefined,
  task: TaskName,
  regression: boolean,
  splits: Splits,
  names: string[] | undefined,
): void {
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
  if (flag && !scored.includes(flag)) {
    throw new ArgsError(
      `--best-metric ${flag}: this run's evaluations report ${scored.join(", ")} ` +
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
}

/** The settings a resumed run must share with the run it continues (`o`: its method's options). */
function fingerprintOf(
  v: TrainValues,
  data: string,
  o: MethodOptions,
  regression: boolean,
  metric: string | undefined,
  totalSteps: number,
): Record<string, unknown> {
  const adapterConfig = adapterConfigOf(o, v.model);
  const accumulate = v["grad-accum"];
  return {
    model: resolve(v.model),
    task: o.task,
    method: o.method,
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
    lr: o.lr,
    headLr: o.headLr,
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
}

/** Settings a checkpoint written before they were fingerprinted lacks: any value resumes it. */
const LATER_SETTINGS = ["evalEvery", "maxEval"];

/** `fingerprint` without its adapter config's base_model_name_or_path. */
function withoutBasePath(fingerprint: Record<string, unknown>): Record<string, unknown> {
  const adapter = fingerprint.adapter;
  if (typeof adapter !== "object" || adapter === null) return fingerprint;
  const { base_model_name_or_path: _, ...rest } = adapter as Record<string, unknown>;
  return { ...fingerprint, adapter: rest };
}

/** Refuse to resume the run of `state` with other settings, or with a --stop-at it is past. */
export function checkResume(
  state: TrainerState,
  fingerprint: Record<string, unknown>,
  outDir: string,
  stopAt: number | undefined,
): void {
  // the adapter config's base path is as typed (as PEFT saves it); `model` compares it resolved, so
  // a run resumes from another directory or with another spelling of the same --model
  const saved = withoutBasePath(state.fingerprint);
  const changes = fingerprintChanges(
    saved,
    withoutBasePath(fingerprint),
    LATER_SETTINGS.filter((k) => !(k in saved)),
  );
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

function targetModulesOf(flag: string | undefined): string[] | string | undefined {
  if (flag === undefined) return undefined;
  if (flag === "all-linear" || /[\\^$*+?()[\]{}|]/.test(flag)) return flag;
  return listOf(flag);
}

/** `--best-metric`'s name of an evaluation's field: `f1-macro` → `f1Macro`, `token-accuracy` → `tokenAccuracy`. */
function metricKey(flag: string): string {
  return flag.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
}
