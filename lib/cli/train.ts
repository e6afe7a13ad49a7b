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
import { join } from "node:path";
import { getGpu, type Gpu } from "../gpu/mod.ts";
import { type AttentionPath, withAttentionPath } from "../tensor/mod.ts";
import { loadModel } from "../models/load.ts";
import type { Model } from "../models/model.ts";
import type { PeftModel } from "../peft/apply.ts";
import {
  type BestMetric,
  findCheckpoint,
  loadCheckpoint,
  type LoadedCheckpoint,
} from "../train/checkpoint.ts";
import { RunLog } from "../train/log.ts";
import { WriteError } from "../io/atomic.ts";
import { Progress } from "../train/progress.ts";
import { evaluate, inOrder } from "../train/tasks.ts";
import { BEST_DIR, defaultMetric, describeEval, train, type TrainResult } from "../train/trainer.ts";
import { explainDeviceError } from "./errors.ts";
import { ArgsError, type CommandSpec, DEFAULT_MODEL, refuseUnused, withArgs } from "./args.ts";
import { METHOD_FLAGS, type PreparedMethod, prepareMethod } from "./method.ts";
import { loadingProgress, loadNoteLines } from "./loading.ts";
import { clearOutDir, runArgs, shellLine, withSavedArgs } from "./run_dir.ts";
import { isBuiltinData } from "./setup.ts";
import { ensurePadToken, withArticle } from "./task.ts";
import { FLAGS, type TrainValues } from "./train_flags.ts";
import { checkResume, planRun, type TrainPlan } from "./train_plan.ts";

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
 * One training run; resolves to the exit code and the final held-out accuracy, if any. `given`:
 * the flags given, refused where the task does not use them. Device errors become advice naming
 * `flags` alone. `resume`: the command that continues the run once stopped (null: the demo's runs,
 * which start over).
 */
async function runTraining(
  gpu: Gpu,
  v: TrainValues,
  given: ReadonlySet<string>,
  flags: readonly string[],
  resume: string | null,
  started?: string[],
): Promise<{ code: number; accuracy?: number }> {
  const plan = await planRun(v, given);
  const { method, fingerprint } = plan;
  const outDir = v.out;
  const ckpt = v.resume ? await loadCheckpoint(outDir) : undefined;
  if (ckpt) checkResume(ckpt.state, fingerprint, outDir, v["stop-at"]);
  // a resumed full run's weights are all trained: its checkpoint's model/ is the model
  const modelDir = ckpt && method === "full" ? join(ckpt.dir, "model") : v.model;
  let model: Model | null = null;
  let peft: PeftModel | null = null;
  let runLog = null as RunLog | null;
  const stopper = listenForStop(outDir);
  try {
    model = await loadRunModel(gpu, modelDir, v, plan, ckpt !== undefined);
    configureModel(model, v, plan);
    const prepared = await prepareMethod(
      model,
      plan.methodOptions,
      ckpt && method !== "full" ? ckpt.dir : undefined,
    );
    peft = prepared.peft;
    // as transformers' TrainingArguments.get_warmup_steps counts them
    const warmupSteps = Math.ceil(v["warmup-ratio"] * plan.totalSteps);
    if (!v.quiet) printHeader(model, v, plan, prepared.trainable, warmupSteps, ckpt?.state.step);
    noteUnusedOutputs(plan);
    // a Ctrl-C while the model loaded: stop before --out changes at all
    if (stopper.signal) return stoppedBeforeStart(stopper.signal, outDir, true, ckpt && resume);
    // the data, the model and the flags are checked: only now does --overwrite remove the old run
    if (v.overwrite && !ckpt) await clearOutDir(outDir);
    const log = runLog = await openRunLog(outDir, ckpt?.state.step);
    if (!ckpt) {
      await log.write({ type: "start", step: 0, ...fingerprint, trainable: prepared.trainable, version: 1 });
    } else await log.write({ type: "resume", step: ckpt.state.step });
    const session = { ckpt, log, stopper, warmupSteps, started, flags };
    const result = await trainModel(model, prepared, v, plan, session);
    if (result.status === "stopped") return await reportStopped(result, log, outDir, stopper, resume, ckpt);
    return await finishRun(result, log, prepared, v, plan);
  } catch (e) {
    throw await withResumeHint(e, outDir, resume);
  } finally {
    stopper.remove();
    runLog?.close();
    peft?.detach();
    model?.dispose();
  }
}

/** Load the model to train from `modelDir` (`resuming`: a run's checkpoint holds its trained head). */
async function loadRunModel(
  gpu: Gpu,
  modelDir: string,
  v: TrainValues,
  plan: TrainPlan,
  resuming: boolean,
): Promise<Model> {
  return await loadModel(gpu, modelDir, {
    task: plan.task,
    numLabels: plan.task === "causal-lm" ? undefined : plan.splits.numLabels,
    dtype: v.dtype as WeightDtype,
    seed: v.seed,
    // a head for the data's classes, even where the checkpoint's has as many (a resumed run's
    // trained head comes from its checkpoint)
    newHead: v["new-head"] && !resuming,
    onProgress: loadingProgress(v.quiet),
    onLoaded: (notes) => {
      if (!v.quiet) { for (const line of loadNoteLines(notes)) console.error(line); }
    },
  });
}

/** Set what the run changes in the model's config: its head's outputs, problem type and pad token. */
function configureModel(model: Model, v: TrainValues, plan: TrainPlan): void {
  model.gradientCheckpointing = v["gradient-checkpointing"];
  // the data's class names name the head's outputs (a token classifier's evaluations read entities from them)
  if (plan.names) model.config.labels = plan.names;
  // a new head's problem type is the data's: one the config names is replaced outright (the saved
  // config.json would keep it otherwise)
  if (v["new-head"] && model.config.problemType) model.config.problemType = "single_label_classification";
  if (plan.head.regression) model.config.problemType = "regression";
  if (plan.splits.multiLabel) model.config.problemType = "multi_label_classification";
  else if (model.config.problemType === "multi_label_classification") {
    throw new ArgsError(
      `${v.model} has a multi-label head (problem_type "multi_label_classification"): ` +
        `give each example a list of labels (JSONL or Parquet)`,
    );
  }
  ensurePadToken(model.config, plan.task, plan.tokenizer);
}

/** Print the run's header: the model, its storage, the data and the method's settings. */
function printHeader(
  model: Model,
  v: TrainValues,
  plan: TrainPlan,
  trainable: number,
  warmupSteps: number,
  resumeStep: number | undefined,
): void {
  const { method, task, accumulate } = plan;
  const header = [
    `model ${v.model} (${plan.config.modelType}, ${task})` +
    `${resumeStep !== undefined ? `, resuming at step ${resumeStep}` : ""}`,
    `storage ${storageSummary(model)}`,
    `data  ${plan.splits.summary}`,
    `method ${method}: ${trainable} trainable values; ${plan.totalSteps} steps of ${v["batch-size"]}` +
    `${accumulate > 1 ? ` × ${accumulate} batches` : ""}, ` +
    `lr ${plan.lr}${task === "causal-lm" ? "" : `, head lr ${plan.headLr}`}, ${v.schedule} schedule, ` +
    `warmup ${warmupSteps}`,
  ];
  for (const line of header) console.error(line);
}

/** A kept head with outputs the data's classes leave unused: training goes on, but say so. */
function noteUnusedOutputs({ splits, head: { existingHead } }: TrainPlan): void {
  const classes = splits.labelNames?.length ?? 0;
  if (existingHead !== undefined && classes > 0 && classes < existingHead && !splits.multiLabel) {
    console.error(
      `note: the model's head has ${existingHead} outputs and the data ${classes} classes, which take ids ` +
        `0..${classes - 1}; --new-head starts ${withArticle(`${classes}-class`)} head instead`,
    );
  }
}

/** Open the run's JSONL log in `outDir` (`resumeAt`: the step a resumed run continues from). */
async function openRunLog(outDir: string, resumeAt: number | undefined): Promise<RunLog> {
  return await RunLog.open(join(outDir, "log.jsonl"), { resumeAt, onWarning: Progress.print }).catch((e) => {
    if (e instanceof WriteError) throw e; // a full disk is no usage mistake
    throw new ArgsError(`--out ${outDir}: cannot write the run there (${(e as Error).message})`);
  });
}

/**
 * `e`, or for a write that failed mid-run (the log, best/, the final adapter or model) while a
 * checkpoint of the run is kept, the same failure saying how to continue from it.
 */
async function withResumeHint(e: unknown, outDir: string, resume: string | null): Promise<unknown> {
  if (!(e instanceof WriteError) || !resume || e.checkpointTold) return e;
  const kept = await findCheckpoint(outDir).catch(() => null);
  if (!kept) return e;
  return new WriteError(
    e.path,
    `${e.reason}. The checkpoint in ${kept} is kept: once the cause is fixed, continue with: ${resume}`,
    { cause: e, checkpointTold: true },
  );
}

/** One session of a run, beside its plan. */
interface Session {
  /** The checkpoint it resumes from. */
  ckpt: LoadedCheckpoint | undefined;
  log: RunLog;
  stopper: StopListener;
  warmupSteps: number;
  /** The options that started the run, kept in its checkpoints. */
  started: string[] | undefined;
  /** The flags device errors' advice may name. */
  flags: readonly string[];
}

/** Train `model` with its method `prepared` to the end of the run, or until stopped. */
async function trainModel(
  model: Model,
  prepared: PreparedMethod,
  v: TrainValues,
  plan: TrainPlan,
  { ckpt, log, stopper, warmupSteps, started, flags }: Session,
): Promise<TrainResult> {
  const { method, task, totalSteps, metric } = plan;
  const progress = new Progress(totalSteps, {
    label: method,
    unit: task === "image-cls" ? "img" : "tok",
    silent: v.quiet,
    startStep: ckpt?.state.step ?? 0,
  });
  const evalSource = plan.splits.eval;
  const evaluateFn = evalSource ? () => evaluate(model, inOrder(evalSource), task) : undefined;
  try {
    return await train({
      model,
      task,
      data: plan.splits.train,
      groups: prepared.groups,
      totalSteps,
      accumulate: plan.accumulate,
      warmupSteps,
      decay: v.schedule as "linear" | "cosine" | "constant",
      maxGradNorm: v["max-grad-norm"] > 0 ? v["max-grad-norm"] : undefined,
      seed: v.seed,
      logEvery: v["log-every"],
      evalEvery: v["eval-every"],
      evaluate: evaluateFn,
      outDir: v.out,
      saveEvery: v["save-every"],
      writeWeights: prepared.writeWeights,
      // best/ is an output, as the run's own: in the source's dtypes (a checkpoint keeps F32)
      writeBest: async (dir) => void await prepared.saveFinal(dir),
      fingerprint: plan.fingerprint,
      args: started ? runArgs(started) : undefined,
      resumeFrom: ckpt,
      log,
      progress,
      setTraining: prepared.peft ? (on) => prepared.peft!.train(on) : undefined,
      shouldStop: (done) => {
        // first asked just before the first step, once the trainer has set up: steps begin
        stopper.begin();
        return stopper.signal !== null || done === v["stop-at"];
      },
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
}

/**
 * Log and report a stopped run (`ckpt`: the checkpoint it resumed from); its exit code. A stop
 * that came before the first step (the trainer asks once the log is open) wrote no checkpoint.
 */
async function reportStopped(
  result: TrainResult,
  log: RunLog,
  outDir: string,
  stopper: StopListener,
  resume: string | null,
  ckpt: LoadedCheckpoint | undefined,
): Promise<{ code: number }> {
  await log.write({ type: "end", step: result.steps, status: "stopped" });
  // --stop-at is past the step a run starts from: only a signal stops one before its first step
  if (stopper.signal && result.steps === (ckpt?.state.step ?? 0)) {
    return stoppedBeforeStart(stopper.signal, outDir, false, ckpt && resume);
  }
  console.error(
    `stopped at step ${result.steps}; ` +
      (resume
        ? `checkpoint in ${join(outDir, "checkpoint")}. Continue with: ${resume}`
        : "the demo does not resume: run it again to start over"),
  );
  // a signal exits as an interrupt does; a stop --stop-at planned is a success
  return { code: stopper.signal ? STOP_SIGNALS[stopper.signal].status : 0 };
}

/**
 * Report a run stopped by `signal` before its first step (`untouched`: before --out changed;
 * `resume`: the command that continues the run resumed, whose checkpoint is kept); its exit code.
 */
function stoppedBeforeStart(
  signal: StopSignal,
  outDir: string,
  untouched: boolean,
  resume: string | null | undefined,
): { code: number } {
  console.error(
    `stopped before the first step: nothing was trained` +
      (untouched ? ` and --out ${outDir} is as it was` : "") +
      (resume ? `; the checkpoint is kept. Continue with: ${resume}` : ""),
  );
  return { code: STOP_SIGNALS[signal].status };
}

/** Save the trained run's output, log its end and print what was saved and how it scored. */
async function finishRun(
  result: TrainResult,
  log: RunLog,
  prepared: PreparedMethod,
  v: TrainValues,
  plan: TrainPlan,
): Promise<{ code: number; accuracy?: number }> {
  const outDir = v.out;
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
  if (result.status === "early") console.error(`stopped early at step ${result.steps} of ${plan.totalSteps}`);
  const counted = plan.task === "image-cls" ? "images" : "tokens";
  console.error(`saved ${saved} (${result.seconds.toFixed(1)} s, ${result.tokens} ${counted} this session)`);
  if (last) console.error(`held-out: ${describeEval(last)}`);
  const b = result.best;
  if (!b && last && (v["save-best"] || v["early-stop"])) {
    const name = metricName(plan.metric ?? defaultMetric(last));
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
}

/** The signals that stop a run after its step: what to call each, and the exit status (128 + its number). */
const STOP_SIGNALS = {
  SIGINT: { label: "Ctrl-C", status: 130 },
  SIGTERM: { label: "SIGTERM", status: 143 },
} as const;
type StopSignal = keyof typeof STOP_SIGNALS;

/** Whether a signal asked a run to stop, and how to stop listening. */
interface StopListener {
  readonly signal: StopSignal | null;
  /** Steps begin (the trainer asks before the first): a stop asked from now on comes after a step, with a checkpoint. */
  begin(): void;
  remove(): void;
}

/**
 * Listen for Ctrl-C and SIGTERM (a scheduler's preemption, `timeout`) during a run in `outDir`:
 * the first asks the run to stop after its step with a checkpoint (`signal` tells which came); a
 * second exits at once. `remove()` stops listening.
 */
function listenForStop(outDir: string): StopListener {
  let signal: StopSignal | null = null, begun = false;
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
        begun
          ? `\n${label}: stopping after this step and saving a checkpoint (once this shows, Ctrl-C again quits ` +
            "without one)"
          // the model or data still loading: nothing is trained or written, however long that takes
          : `\n${label}: stopping before the first step, once the setup in progress ends (${label} again quits now)`,
      );
    };
    Deno.addSignalListener(name, handler);
    handlers.set(name, handler);
  }
  return {
    get signal() {
      return signal;
    },
    begin: () => void (begun = true),
    remove: () => handlers.forEach((handler, name) => Deno.removeSignalListener(name, handler)),
  };
}

/** An evaluation field's name in words: `tokenAccuracy` → `token accuracy`. */
function metricName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`);
}
