/**
 * The training loop: AdamW over named parameter groups (e.g. the adapter's coefficients and
 * the classifier head, each with its own learning rate), a warmup + decay schedule, gradient
 * clipping, periodic evaluation, atomic checkpoints, and exact resumption.
 *
 * Each step is encoded into the stream and submitted without waiting. The loss is summed on
 * the GPU and read back through `readLater` once every `logEvery` steps (the read of one
 * interval is awaited when the next is queued, which also bounds how far the CPU runs ahead).
 * As transformers' Trainer, a log record is the mean of the whole interval: evaluations and
 * checkpoints read the open sum (a checkpoint stores it) but leave the interval open. A
 * non-finite loss stops the run with {@link TrainingDivergedError} before any checkpoint is
 * written over the last good one.
 *
 * Exactness of a resumed run: the batches of global step s are a pure function of (seed, s), the
 * dropout masks of (seed, s) (and the batch's place in the step, with `accumulate`), the
 * learning rate of s; the optimiser moments and step counts,
 * and the trained weights, are restored from the checkpoint bit for bit. So a run stopped at
 * step K and resumed to N logs the same losses as a run of N steps.
 * @module
 */
import { join } from "node:path";
import type { Model } from "../models/model.ts";
import { add, keep, noGrad, scale, type Tensor, Tensor as T, tidy } from "../tensor/mod.ts";
import { rankEvaluation, type Ranking } from "./best.ts";
import {
  type BestMetric,
  type BestState,
  CHECKPOINT_DIR,
  type LoadedCheckpoint,
  type OptimizerState,
  saveCheckpoint,
  type TrainerState,
} from "./checkpoint.ts";
import type { RunLog } from "./log.ts";
import { AdamW } from "./optim.ts";
import type { Progress } from "./progress.ts";
import { lrFactor, type ScheduleOptions } from "./schedule.ts";
import {
  batchLoss,
  type BatchSource,
  batchTokens,
  type EvalResult,
  headTask,
  lossCount,
  type TaskName,
} from "./tasks.ts";

export { defaultMetric } from "./best.ts";

/** A trainable tensor and the name it is saved under. */
export interface NamedParam {
  /**
   * Name in checkpoints, e.g. `<layer path>.<kind>.<index>` or a head's model key; a resumed
   * run must train the same names.
   */
  name: string;
  /** The tensor; {@link train} sets its requiresGrad. */
  tensor: Tensor;
}

/** Parameters sharing a learning rate and weight decay (e.g. "adapter", "head"). */
export interface ParamGroupSpec {
  /** Group name, used in log records (`lr_<name>`). */
  name: string;
  /** The group's tensors, in update order. */
  params: NamedParam[];
  /** Peak learning rate, scaled each step by the warmup and decay schedule. */
  lr: number;
  /** Decoupled (AdamW) weight decay. */
  weightDecay: number;
}

/** Options of {@link train}. */
export interface TrainOptions {
  /** The model to train (with its adapter attached, if any). */
  model: Model;
  /**
   * How a batch's loss is taken: "causal-lm", "seq-cls", "token-cls" or "image-cls"; the model's
   * head (default `model.task`), which it must be when given.
   */
  task?: TaskName;
  /**
   * Training batches: step s trains on `data.batch(data.positionAt(s))` (see `accumulate`).
   * A step with no target that counts (a causal LM's or token classifier's batches whose labels
   * are all −100) is not skipped: its loss is 0 (and counts as such in its interval's logged
   * mean), its gradient is zero, and AdamW still steps: the moments' momentum and the weight
   * decay move the parameters, and the step counts in the bias correction. The CLI's data sets
   * drop or refuse examples without targets, but for token classification's sentences of no
   * words, kept as run_ner keeps them (a batch of only those is such a step); a custom source
   * should not give one.
   */
  data: BatchSource;
  /** The trained tensors in named groups, each with its learning rate; at least one tensor in all. */
  groups: ParamGroupSpec[];
  /** Optimiser steps of the whole run. */
  totalSteps: number;
  /**
   * Batches whose gradients are added up for each optimiser step (default 1): the effective
   * batch is this many of `data`'s batches. Each batch's loss counts by its share of the
   * step's targets (examples, or tokens for a causal LM), so a step equals one step on the
   * concatenated batch. As transformers' Trainer, a step never spans two epochs: an epoch of E
   * batches makes ⌈E/k⌉ steps, its last one taking the batches left (`stepBatches`).
   */
  accumulate?: number;
  /** Linear warmup steps. */
  warmupSteps: number;
  /** Decay after warmup (default linear). */
  decay?: ScheduleOptions["decay"];
  /** Clip gradients to this global norm (off when undefined). */
  maxGradNorm?: number;
  /** Keys dropout (the data order is the BatchIterator's own seed). */
  seed: number;
  /** Steps between loss readbacks / log lines (default 10). */
  logEvery?: number;
  /** Steps between evaluations (0 or undefined: only at the end when `evaluate` is given). */
  evalEvery?: number;
  /** Evaluation, run in eval mode every `evalEvery` steps and at the end of a finished run. */
  evaluate?: () => Promise<EvalResult>;
  /** Where checkpoints go (none when undefined). */
  outDir?: string;
  /** Steps between checkpoints (0 or undefined: only at the end and when stopped). */
  saveEvery?: number;
  /** Write the trained weights into a checkpoint folder. */
  writeWeights?: (dir: string) => Promise<void>;
  /**
   * Write the best evaluation's weights into `<outDir>/best` (default `writeWeights`): the CLI
   * writes them as it writes the run's output, where a checkpoint keeps F32.
   */
  writeBest?: (dir: string) => Promise<void>;
  /** Settings a resumed run must share (stored in the checkpoint). */
  fingerprint?: Record<string, unknown>;
  /** The options that started the run, stored in checkpoints (see TrainerState.args). */
  args?: string[];
  /** Continue from this checkpoint (its weights must already be in the model). */
  resumeFrom?: LoadedCheckpoint;
  /** JSONL log that receives train, eval and checkpoint records. */
  log?: RunLog;
  /** Progress display, updated after every step. */
  progress?: Progress;
  /**
   * Switch train mode (dropout) on or off; default `model.train`. Pass the adapter's
   * (`PeftModel.train`) so that adapter dropout follows too.
   */
  setTraining?: (on: boolean) => void;
  /**
   * Asked after every step but the last, and once before the first (after a turn of the event
   * loop, so that a signal that came while the run set up is seen); true stops the run. After a
   * step a checkpoint is saved first; before the first, nothing is trained, evaluated or written.
   */
  shouldStop?: (stepsDone: number) => boolean;
  /** Track the best evaluation: keep its weights, stop when evaluations stop improving. */
  best?: BestOptions;
}

/** What {@link TrainOptions.best} does with the evaluations. */
export interface BestOptions {
  /**
   * What "better" means: a lower loss, or a higher accuracy, MCC, F1, precision, recall, Pearson
   * or Spearman correlation (default: entity F1 for a token classifier with entity tags, else
   * accuracy when the evaluation reports one, else Pearson, else loss).
   */
  metric?: BestMetric;
  /** Write the weights of each better evaluation into `<outDir>/best` (through `writeBest`). */
  save?: boolean;
  /**
   * Stop after this many evaluations in a row that are not better (early stopping; default never).
   * An evaluation whose metric is NaN (a correlation of constant values) is never better, as
   * transformers' np.greater / np.less compare; before the first best, NaN evaluations count from
   * the second on, as transformers' EarlyStoppingCallback counts them.
   */
  patience?: number;
}

/** How a run ended. */
export interface TrainResult {
  /** Optimiser steps done (all sessions). */
  steps: number;
  /**
   * "done" when every step ran, "stopped" when `shouldStop` ended the session (a checkpoint
   * continues it; stopped before its first step, `steps` is the step it started from and no
   * checkpoint was written), "early" when `best.patience` evaluations in a row were not better.
   */
  status: "done" | "stopped" | "early";
  /** Mean training loss of each logged interval, by the step that ends it. */
  losses: { step: number; loss: number }[];
  /** Each evaluation's result, with the step it ran after. */
  evals: ({ step: number } & EvalResult)[];
  /** The best evaluation so far (all sessions), when {@link TrainOptions.best} is set. */
  best?: BestState;
  /** Seconds of this session's training (evaluation included). */
  seconds: number;
  /** Tokens (or images) trained on in this session. */
  tokens: number;
}

/** The loss became NaN or infinite: training stopped, the last checkpoint was kept. */
export class TrainingDivergedError extends Error {
  /** Always "TrainingDivergedError". */
  override name = "TrainingDivergedError";
}

/** The folder under the run's output that holds the best evaluation's weights. */
export const BEST_DIR = "best";

/**
 * The batches of optimiser step `step` with `accumulate` batches a step, over epochs of
 * `perEpoch` batches: `count` batches from global batch `first`. Each epoch makes ⌈perEpoch /
 * accumulate⌉ steps, its last one taking the batches left, as transformers' Trainer steps.
 */
export function stepBatches(
  step: number,
  accumulate: number,
  perEpoch: number,
): { first: number; count: number } {
  const steps = Math.ceil(perEpoch / accumulate);
  const epoch = Math.floor(step / steps), within = (step % steps) * accumulate;
  return { first: epoch * perEpoch + within, count: Math.min(accumulate, perEpoch - within) };
}

/** Optimiser steps of `epochs` epochs of `perEpoch` batches, `accumulate` a step (at least 1). */
export function stepsForEpochs(epochs: number, perEpoch: number, accumulate: number): number {
  // ⌈epochs · ⌈E/k⌉⌉ as transformers' max_steps, forgiving 0.1 · 10 = 1.0000000000000002
  return Math.max(1, Math.ceil(epochs * Math.ceil(perEpoch / accumulate) - 1e-9));
}

/** Model fields the trainer sets when the model has them (BaseModel's dropout key). */
interface DropoutKeyed {
  dropoutSeed?: number;
  dropoutStep?: number;
}

/** The summed training loss of the steps since the last log record. */
interface LossInterval {
  /** The sum, on the GPU (a kept scalar). */
  sum: Tensor;
  /** Steps summed. */
  steps: number;
  /** The queued read of the last closed interval, which logs its record. */
  pending: Promise<void> | null;
}

/** What the phases of {@link train} share: the run's setup, and its state as it trains. */
interface Run {
  opts: TrainOptions;
  /** The task of the model's head. */
  task: TaskName;
  /** Batches an optimiser step (`accumulate`). */
  micro: number;
  logEvery: number;
  /** The trained tensors' names, in optimiser order. */
  names: string[];
  opt: AdamW;
  schedule: ScheduleOptions;
  setTraining: (on: boolean) => void;
  keyed: DropoutKeyed;
  /** Optimiser steps done (all sessions). */
  step: number;
  ranking: Ranking;
  /** Seconds and tokens of the sessions before this one. */
  elapsedBefore: number;
  tokensBefore: number;
  /** When this session started (`performance.now()`). */
  started: number;
  result: TrainResult;
  interval: LossInterval;
  /**
   * The step up to which a {@link settle} (before an evaluation or a checkpoint) found the open
   * interval's loss finite; a resumed run's checkpoint step. Later intervals start past it.
   */
  checked: number;
  /** The last good checkpoint: the one resumed from, or the last one this run wrote. */
  kept?: { dir: string; step: number };
}

/** Run (or continue) a training run; see the module doc. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const run = startRun(opts);
  try {
    if (run.result.status === "early") return run.result; // resumed after it stopped early
    if (await stoppedBeforeFirstStep(run)) return run.result;
    await trainSteps(run);
    await finishRun(run);
  } finally {
    // a step that failed half-way leaves gradients behind; an unread interval is discarded
    endRun(run);
  }
  return run.result;
}

/** Check the options, build the optimiser and restore a resumed run's state. */
function startRun(opts: TrainOptions): Run {
  const { model, totalSteps } = opts;
  const { task, micro, names } = checkOptions(opts);
  const gpu = model.gpu;
  const logEvery = Math.max(1, opts.logEvery ?? 10);
  const opt = createOptimizer(opts);
  const schedule: ScheduleOptions = {
    warmupSteps: opts.warmupSteps,
    totalSteps,
    decay: opts.decay ?? "linear",
  };
  const { step, ranking, elapsedBefore, tokensBefore } = resumeState(opts.resumeFrom, names, opt);
  const setTraining = opts.setTraining ?? ((on: boolean) => model.train(on));
  const keyed = model as unknown as DropoutKeyed;
  if ("dropoutSeed" in keyed) keyed.dropoutSeed = opts.seed;

  const result: TrainResult = { steps: step, status: "done", losses: [], evals: [], seconds: 0, tokens: 0 };
  if (ranking.best) result.best = ranking.best;
  // a run that stopped early is over: resuming it trains, evaluates and writes nothing more
  if (opts.resumeFrom?.state.stoppedEarly === true) result.status = "early";
  const started = performance.now();
  // the summed loss of the steps since the last log record (a stopped run's open interval resumed)
  const open = opts.resumeFrom?.state.interval;
  const interval: LossInterval = {
    sum: keep(open ? T.from(gpu, Float32Array.of(open.loss), []) : T.zeros(gpu, [])),
    steps: open?.steps ?? 0,
    pending: null,
  };
  return {
    opts,
    task,
    micro,
    logEvery,
    names,
    opt,
    schedule,
    setTraining,
    keyed,
    step,
    ranking,
    elapsedBefore,
    tokensBefore,
    started,
    result,
    interval,
    checked: step,
    kept: opts.resumeFrom && { dir: opts.resumeFrom.dir, step },
  };
}

/**
 * Throw on options no run can take; give the task, the batches a step and the trained tensors'
 * names.
 */
function checkOptions(opts: TrainOptions): { task: TaskName; micro: number; names: string[] } {
  const task = headTask(opts.model, opts.task, "train");
  const micro = opts.accumulate ?? 1;
  if (!(Number.isInteger(micro) && micro >= 1)) {
    throw new RangeError(`train: accumulate must be an integer ≥ 1, got ${micro}`);
  }
  const names = opts.groups.flatMap((g) => g.params.map((p) => p.name));
  if (names.length === 0) throw new Error(`train: nothing to train (no parameters in any group)`);
  return { task, micro, names };
}

/** Mark the groups' tensors trainable and build AdamW over the groups that have any. */
function createOptimizer(opts: TrainOptions): AdamW {
  for (const g of opts.groups) for (const p of g.params) p.tensor.requiresGrad = true;
  return new AdamW(
    opts.model.gpu,
    opts.groups.filter((g) => g.params.length > 0).map((g) => ({
      params: g.params.map((p) => p.tensor),
      lr: g.lr,
      weightDecay: g.weightDecay,
    })),
    { lr: opts.groups[0].lr, maxGradNorm: opts.maxGradNorm },
  );
}

/** Where a run starts: step 0, or a checkpoint's step, best evaluation, time and tokens. */
function resumeState(
  from: LoadedCheckpoint | undefined,
  names: string[],
  opt: AdamW,
): Pick<Run, "step" | "ranking" | "elapsedBefore" | "tokensBefore"> {
  if (!from) return { step: 0, ranking: { unranked: 0 }, elapsedBefore: 0, tokensBefore: 0 };
  const { state, optimizer } = from;
  if (optimizer.names.join("\n") !== names.join("\n")) {
    throw new Error(
      `${from.dir}: the checkpoint trained other parameters (${optimizer.names.length} saved, ` +
        `${names.length} now; first difference at "${firstDifference(optimizer.names, names)}")`,
    );
  }
  opt.importState(optimizer);
  return {
    step: state.step,
    ranking: { best: state.best, unranked: state.unranked ?? 0 },
    elapsedBefore: state.elapsed,
    tokensBefore: state.tokens,
  };
}

/**
 * Whether a stop was asked for before the first step, as the run set up (then the session ends
 * "stopped" where it started). Setting up runs without a turn of the event loop, in which a
 * signal listener (Ctrl-C) would run: one is taken before asking.
 */
async function stoppedBeforeFirstStep(run: Run): Promise<boolean> {
  const { opts, result } = run;
  if (!opts.shouldStop || run.step >= opts.totalSteps) return false;
  await nextTurn();
  if (!opts.shouldStop(run.step)) return false;
  result.status = "stopped";
  return true;
}

/** Train until the last step, a stop request, or early stopping; evaluate and save on the way. */
async function trainSteps(run: Run): Promise<void> {
  const { opts, result } = run;
  const { totalSteps } = opts;
  opts.progress?.update(run.step, {});
  const ended = () => result.status !== "done"; // a function: the evaluations may end the run
  // steps between the checkpoints written on the way
  const saveEvery = opts.outDir && opts.writeWeights ? opts.saveEvery ?? 0 : 0;
  while (run.step < totalSteps && !ended()) {
    await prepareStep(run, run.step);
    trainStep(run);
    // the next step's batches load (a streamed source's) while the GPU runs this one
    if (run.step < totalSteps) prepareStep(run, run.step).catch(() => {});
    const step = run.step;
    opts.progress?.update(step, { tokens: result.tokens });
    if (step % run.logEvery === 0 || step === totalSteps) await queueRead(run, step);
    // a turn of the event loop, so that a signal listener (Ctrl-C) runs before shouldStop is asked
    await nextTurn();
    const stop = step < totalSteps && (opts.shouldStop?.(step) ?? false);
    // evaluated even when stopping here, so that a resumed run has every evaluation
    if (opts.evalEvery && step % opts.evalEvery === 0 && step < totalSteps) {
      await settle(run);
      await runEval(run);
      if (ended()) break;
    }
    if (stop) {
      result.status = "stopped";
      break;
    }
    if (saveEvery > 0 && step % saveEvery === 0 && step < totalSteps) await checkpoint(run);
  }
}

/** Make ready the batches of optimiser step `step` where the source loads them ({@link BatchSource.prepare}). */
async function prepareStep(run: Run, step: number): Promise<void> {
  const { data } = run.opts;
  if (!data.prepare) return;
  const { first, count } = stepBatches(step, run.micro, data.stepsPerEpoch);
  await Promise.all(Array.from({ length: count }, (_, j) => data.prepare!(data.positionAt(first + j))));
}

/**
 * Encode one optimiser step (each of its batches' forward and backward pass, then the update)
 * and submit it without waiting; count it and its tokens.
 */
function trainStep(run: Run): void {
  const { opts: { model, data }, task, opt, keyed, result } = run;
  const { first, count } = stepBatches(run.step, run.micro, data.stepsPerEpoch);
  const batches = Array.from({ length: count }, (_, j) => data.batch(data.positionAt(first + j)));
  const counts = batches.map((b) => lossCount(b, task));
  const targets = counts.reduce((a, b) => a + b, 0);
  const factor = lrFactor(run.step, run.schedule);
  run.setTraining(true);
  batches.forEach((batch, j) => {
    // dropout masks are keyed by the batch's index, so each batch of a step gets its own
    if ("dropoutStep" in keyed) keyed.dropoutStep = first + j;
    tidy(() => {
      const full = batchLoss(model, batch, task);
      const loss = count === 1 ? full : scale(full, targets > 0 ? counts[j] / targets : 1 / count);
      loss.backward();
      const next = keep(noGrad(() => add(run.interval.sum, loss)));
      run.interval.sum.dispose();
      run.interval.sum = next;
    });
  });
  opt.step(factor);
  opt.zeroGrad();
  model.gpu.stream.flush();
  // batches of other shapes (--group-by-length, an epoch's short last batch) leave free
  // buffers of size classes this step did not use: give them back before they pile up
  model.gpu.pool.releaseIdle();
  run.step++;
  run.interval.steps++;
  result.steps = run.step;
  for (const b of batches) result.tokens += batchTokens(b);
}

/** After the last step (or a stop): log the open interval, evaluate, write the last checkpoint. */
async function finishRun(run: Run): Promise<void> {
  const { opts, result } = run;
  // a run that ended early logs its last, partial interval (a finished run's was logged at its
  // last step); a stopped run's goes into the checkpoint, for the resumed run's next record
  if (run.interval.steps > 0 && result.status !== "stopped") await queueRead(run, run.step);
  await settle(run);
  run.setTraining(false);
  // a run resumed after its last step (killed before its output was written) was evaluated already
  if (result.status === "done" && (opts.resumeFrom?.state.step ?? 0) < opts.totalSteps) await runEval(run);
  await checkpoint(run);
}

/** Release what the run holds, whether it ended or threw. */
function endRun(run: Run): void {
  run.setTraining(false);
  run.opt.zeroGrad();
  run.opt.dispose();
  run.interval.sum.dispose();
  run.opts.progress?.done();
  run.result.seconds = (performance.now() - run.started) / 1000;
}

/** Queue a readback of the interval's summed loss, then await the previous one. */
async function queueRead(run: Run, endStep: number): Promise<void> {
  const { opts, interval, result } = run;
  const gpu = opts.model.gpu;
  const count = interval.steps;
  const tokens = run.tokensBefore + result.tokens;
  const elapsed = round3(run.elapsedBefore + (performance.now() - run.started) / 1000);
  const lr = opts.groups.map((g) => g.lr * lrFactor(endStep - 1, run.schedule));
  const lossRead = interval.sum.readLater();
  const normRead = opts.maxGradNorm !== undefined ? run.opt.gradNorm.readLater() : null;
  interval.sum.dispose();
  interval.sum = keep(T.zeros(gpu, []));
  interval.steps = 0;
  gpu.stream.flush();
  const previous = interval.pending;
  interval.pending = (async () => {
    const loss = (await lossRead)[0] / count;
    const gradNorm = normRead ? (await normRead)[0] : undefined;
    if (!Number.isFinite(loss)) throw diverged(run, loss, endStep - count, endStep);
    result.losses.push({ step: endStep, loss });
    opts.progress?.update(endStep, { loss });
    const rec: Record<string, unknown> = { type: "train", step: endStep, loss };
    opts.groups.forEach((g, i) => rec[`lr_${g.name}`] = lr[i]);
    if (gradNorm !== undefined) rec.grad_norm = gradNorm;
    rec.tokens = tokens;
    rec.elapsed_s = elapsed;
    await opts.log?.write(rec as { type: string; step: number });
  })();
  // a divergence it finds is thrown where it is awaited (the next read or settle), not as an
  // unhandled rejection while the loop encodes the next step
  interval.pending.catch(() => {});
  if (previous) await previous;
}

/**
 * Wait for every queued loss read, then read the open interval's sum without closing it (as
 * transformers, evaluations and checkpoints leave the logging interval whole). Throws on a
 * non-finite loss; gives the open interval, which a checkpoint stores.
 */
async function settle(run: Run): Promise<TrainerState["interval"]> {
  const { interval } = run;
  const p = interval.pending;
  interval.pending = null;
  if (p) await p;
  if (interval.steps === 0) return undefined;
  const loss = (await interval.sum.toArray())[0];
  if (!Number.isFinite(loss)) throw diverged(run, loss / interval.steps, run.step - interval.steps, run.step);
  run.checked = run.step;
  return { loss, steps: interval.steps };
}

/**
 * The error of a mean loss `loss` over the steps after `from` up to `endStep`. When no loss of
 * the run was finite before (a fresh run's first interval), the frozen model or the data is the
 * likelier cause than the updates: at step 1 the only one, as no update came before it.
 */
function diverged(run: Run, loss: number, from: number, endStep: number): TrainingDivergedError {
  const lr = learningRate(run.opts);
  const model = "the frozen model or the data (e.g. a non-finite weight in the model's checkpoint)";
  const advice = Math.max(from, run.checked) > 0
    ? `Lower ${lr}, set ${GRADIENT_CLIP}, or check the data`
    : endStep === 1
    ? `It came before any update: check ${model}; the learning rate is not the cause`
    : `It came in the run's first steps: check ${model} first; else lower ${lr} or set ${GRADIENT_CLIP}`;
  const stopped = `the training loss became ${loss} in the steps up to ${endStep}; training stopped`;
  return new TrainingDivergedError(`${stopped}. ${advice}${keptNote(run)}`);
}

/** The learning rates of `opts`, as the command line and the library set them (for advice). */
function learningRate(opts: TrainOptions): string {
  const head = opts.groups.some((g) => g.name === "head") ? ", --head-lr" : "";
  return `the learning rate (--lr${head}, or the groups' lr)`;
}

/** Clipping the gradient, as the command line and the library set it (for advice). */
const GRADIENT_CLIP = "a gradient norm limit (--max-grad-norm, or maxGradNorm)";

/** Where the last good checkpoint is kept (nothing when the run has none to resume from). */
function keptNote(run: Run): string {
  return run.kept ? `; the last good checkpoint (step ${run.kept.step}) is kept in ${run.kept.dir}` : "";
}

/** Evaluate in eval mode (when the run evaluates), log the result and track the best one. */
async function runEval(run: Run): Promise<void> {
  const { opts, result, step } = run;
  if (!opts.evaluate) return;
  run.setTraining(false);
  const r = await opts.evaluate();
  result.evals.push({ step, ...r });
  await opts.log?.write({ type: "eval", step, ...r });
  opts.progress?.log(`eval @ ${step}: ${describeEval(r)}`);
  if (opts.best) await trackBest(run, r, opts.best);
}

/**
 * Rank an evaluation: write the weights of a better one, log it, or end the run when `patience`
 * evaluations in a row were not better (never at its last step).
 */
async function trackBest(run: Run, r: EvalResult, options: BestOptions): Promise<void> {
  const { opts, result, step } = run;
  const { ranking, metric, value, outcome, notBetter } = rankEvaluation(run.ranking, r, step, options.metric);
  run.ranking = ranking;
  if (outcome === "better") {
    const write = opts.writeBest ?? opts.writeWeights;
    if (options.save && opts.outDir && write) await write(join(opts.outDir, BEST_DIR));
    await opts.log?.write({ type: "best", step, metric, value });
  } else {
    if (outcome === "unranked") {
      opts.progress?.log(`eval @ ${step}: ${metric} is NaN, no best evaluation yet`);
    }
    const { patience } = options;
    const stops = patience !== undefined && notBetter >= patience && result.status === "done" &&
      step < opts.totalSteps;
    if (stops) {
      result.status = "early";
      opts.progress?.log(
        outcome === "unranked"
          ? `stopping early at step ${step}: ${metric} was NaN in ${ranking.unranked} evaluations, with no best one`
          : `stopping early at step ${step}: no better ${metric} in ${patience} evaluations (best ${
            ranking.best!.value.toFixed(4)
          } at step ${ranking.best!.step})`,
      );
    }
  }
  result.best = ranking.best;
}

/** Write a checkpoint of the run so far (when it has an output folder and writes weights). */
async function checkpoint(run: Run): Promise<void> {
  const { opts, names, step } = run;
  if (!opts.outDir || !opts.writeWeights) return;
  const interval = await settle(run);
  const exported = await run.opt.exportState();
  const bad = exported.m.findIndex((m, i) => !allFinite(m) || !allFinite(exported.v[i]));
  if (bad >= 0) {
    throw new TrainingDivergedError(
      `the optimiser state of "${names[bad]}" holds NaN or infinity at step ${step}; training stopped. ` +
        `Lower ${learningRate(opts)} or set ${GRADIENT_CLIP}${keptNote(run)}`,
    );
  }
  const optimizer: OptimizerState = { names, ...exported };
  await saveCheckpoint(opts.outDir, trainerState(run, interval), optimizer, opts.writeWeights);
  run.kept = { dir: join(opts.outDir, CHECKPOINT_DIR), step };
  await opts.log?.write({ type: "checkpoint", step });
}

/** The trainer's part of a checkpoint: what a resumed run needs to continue this one exactly. */
function trainerState(run: Run, interval: TrainerState["interval"]): TrainerState {
  const { opts, step, result } = run;
  const { best, unranked } = run.ranking;
  return {
    step,
    totalSteps: opts.totalSteps,
    position: opts.data.positionAt(stepBatches(step, run.micro, opts.data.stepsPerEpoch).first),
    rng: { seed: opts.seed, step },
    fingerprint: opts.fingerprint ?? {},
    args: opts.args ?? opts.resumeFrom?.state.args,
    ...(best ? { best } : {}),
    ...(!best && unranked > 0 ? { unranked } : {}),
    ...(result.status === "early" ? { stoppedEarly: true } : {}),
    ...(interval ? { interval } : {}),
    elapsed: round3(run.elapsedBefore + (performance.now() - run.started) / 1000),
    tokens: run.tokensBefore + result.tokens,
  };
}

/**
 * One turn of the event loop (pending signals are delivered), through a message: a 0 ms
 * setTimeout waits for the timer's floor instead, ≈ 2 ms a step in Deno (`bench/event_loop.ts`).
 */
function nextTurn(): Promise<void> {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve) => {
    port1.onmessage = () => {
      port1.close();
      port2.close();
      resolve();
    };
    port2.postMessage(null);
  });
}

/** `loss 0.3312, accuracy 0.9123` or `loss 2.91, perplexity 18.4`. */
export function describeEval(r: EvalResult): string {
  const parts = [`loss ${r.loss.toFixed(4)}`];
  if (r.perplexity !== undefined) parts.push(`perplexity ${r.perplexity.toFixed(2)}`);
  if (r.tokenAccuracy !== undefined) parts.push(`token accuracy ${r.tokenAccuracy.toFixed(4)}`);
  if (r.accuracy !== undefined) parts.push(`accuracy ${r.accuracy.toFixed(4)}`);
  if (r.mcc !== undefined) parts.push(`mcc ${r.mcc.toFixed(4)}`);
  // beside a macro F1 (multi-label data), the F1 is the micro one
  if (r.f1 !== undefined) parts.push(`f1${r.f1Macro !== undefined ? " micro" : ""} ${r.f1.toFixed(4)}`);
  if (r.f1Macro !== undefined) parts.push(`f1 macro ${r.f1Macro.toFixed(4)}`);
  if (r.precision !== undefined) parts.push(`precision ${r.precision.toFixed(4)}`);
  if (r.recall !== undefined) parts.push(`recall ${r.recall.toFixed(4)}`);
  if (r.pearson !== undefined) parts.push(`pearson ${r.pearson.toFixed(4)}`);
  if (r.spearman !== undefined) parts.push(`spearman ${r.spearman.toFixed(4)}`);
  return `${parts.join(", ")} (${r.examples} examples)`;
}

function allFinite(a: Float32Array): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

function firstDifference(a: string[], b: string[]): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] ?? b[i];
  return "";
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
