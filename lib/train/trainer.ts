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
import {
  type BestMetric,
  type BestState,
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
  lossCount,
  type TaskName,
} from "./tasks.ts";

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
  /** How a batch's loss is taken: "causal-lm", "seq-cls", "token-cls" or "image-cls" (the model's head). */
  task: TaskName;
  /** Training batches: step s trains on `data.batch(data.positionAt(s))` (see `accumulate`). */
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
   * batches makes ⌈E/k⌉ steps, its last one taking the batches left ({@link stepBatches}).
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
  /** Asked after every step; true stops the run (a checkpoint is saved first). */
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
   * continues it), "early" when `best.patience` evaluations in a row were not better.
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

/** Run (or continue) a training run; see the module doc. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { model, task, data, totalSteps } = opts;
  if (model.task !== task) {
    throw new Error(
      `train: task "${task}", but the model has ${
        model.task === "base" ? "no head" : `a ${model.task} head`
      }`,
    );
  }
  const micro = opts.accumulate ?? 1;
  if (!(Number.isInteger(micro) && micro >= 1)) {
    throw new RangeError(`train: accumulate must be an integer ≥ 1, got ${micro}`);
  }
  const gpu = model.gpu;
  const logEvery = Math.max(1, opts.logEvery ?? 10);
  const names = opts.groups.flatMap((g) => g.params.map((p) => p.name));
  if (names.length === 0) throw new Error(`train: nothing to train (no parameters in any group)`);
  for (const g of opts.groups) for (const p of g.params) p.tensor.requiresGrad = true;
  const opt = new AdamW(
    gpu,
    opts.groups.filter((g) => g.params.length > 0).map((g) => ({
      params: g.params.map((p) => p.tensor),
      lr: g.lr,
      weightDecay: g.weightDecay,
    })),
    { lr: opts.groups[0].lr, maxGradNorm: opts.maxGradNorm },
  );
  const schedule: ScheduleOptions = {
    warmupSteps: opts.warmupSteps,
    totalSteps,
    decay: opts.decay ?? "linear",
  };
  let step = 0, elapsedBefore = 0, tokensBefore = 0;
  let best: BestState | undefined;
  /** Evaluations before the first best (all NaN). */
  let unranked = 0;
  if (opts.resumeFrom) {
    const { state, optimizer } = opts.resumeFrom;
    if (optimizer.names.join("\n") !== names.join("\n")) {
      throw new Error(
        `${opts.resumeFrom.dir}: the checkpoint trained other parameters (${optimizer.names.length} saved, ` +
          `${names.length} now; first difference at "${firstDifference(optimizer.names, names)}")`,
      );
    }
    opt.importState(optimizer);
    step = state.step;
    best = state.best;
    unranked = state.unranked ?? 0;
    elapsedBefore = state.elapsed;
    tokensBefore = state.tokens;
  }
  const setTraining = opts.setTraining ?? ((on: boolean) => model.train(on));
  const keyed = model as unknown as DropoutKeyed;
  if ("dropoutSeed" in keyed) keyed.dropoutSeed = opts.seed;

  const result: TrainResult = { steps: step, status: "done", losses: [], evals: [], seconds: 0, tokens: 0 };
  if (best) result.best = best;
  // a run that stopped early is over: resuming it trains, evaluates and writes nothing more
  const over = opts.resumeFrom?.state.stoppedEarly === true;
  if (over) result.status = "early";
  const started = performance.now();
  // the summed loss of the steps since the last log record (a stopped run's open interval resumed)
  const open = opts.resumeFrom?.state.interval;
  let acc = keep(open ? T.from(gpu, Float32Array.of(open.loss), []) : T.zeros(gpu, []));
  let accSteps = open?.steps ?? 0;
  let pending = null as Promise<void> | null;

  const diverged = (loss: number, endStep: number) =>
    new TrainingDivergedError(
      `the training loss became ${loss} in the steps up to ${endStep}; training stopped. ` +
        `Lower the learning rate (--lr${opts.groups.some((g) => g.name === "head") ? ", --head-lr" : ""}), ` +
        `set --max-grad-norm, or check the data` +
        (opts.outDir ? `; the last good checkpoint in ${opts.outDir} is kept` : ""),
    );

  /** Queue a readback of the interval's summed loss, then await the previous one. */
  const queueRead = async (endStep: number) => {
    const count = accSteps;
    const tokens = tokensBefore + result.tokens;
    const elapsed = round3(elapsedBefore + (performance.now() - started) / 1000);
    const lr = opts.groups.map((g) => g.lr * lrFactor(endStep - 1, schedule));
    const lossRead = acc.readLater();
    const normRead = opts.maxGradNorm !== undefined ? opt.gradNorm.readLater() : null;
    acc.dispose();
    acc = keep(T.zeros(gpu, []));
    accSteps = 0;
    gpu.stream.flush();
    const previous = pending;
    pending = (async () => {
      const loss = (await lossRead)[0] / count;
      const gradNorm = normRead ? (await normRead)[0] : undefined;
      if (!Number.isFinite(loss)) throw diverged(loss, endStep);
      result.losses.push({ step: endStep, loss });
      opts.progress?.update(endStep, { loss });
      const rec: Record<string, unknown> = { type: "train", step: endStep, loss };
      opts.groups.forEach((g, i) => rec[`lr_${g.name}`] = lr[i]);
      if (gradNorm !== undefined) rec.grad_norm = gradNorm;
      rec.tokens = tokens;
      rec.elapsed_s = elapsed;
      await opts.log?.write(rec as { type: string; step: number });
    })();
    if (previous) await previous;
  };

  /**
   * Wait for every queued loss read, then read the open interval's sum without closing it (as
   * transformers, evaluations and checkpoints leave the logging interval whole). Throws on a
   * non-finite loss; gives the open interval, which a checkpoint stores.
   */
  const settle = async (): Promise<TrainerState["interval"]> => {
    const p = pending;
    pending = null;
    if (p) await p;
    if (accSteps === 0) return undefined;
    const loss = (await acc.toArray())[0];
    if (!Number.isFinite(loss)) throw diverged(loss / accSteps, step);
    return { loss, steps: accSteps };
  };

  const runEval = async () => {
    if (!opts.evaluate) return;
    setTraining(false);
    const r = await opts.evaluate();
    result.evals.push({ step, ...r });
    await opts.log?.write({ type: "eval", step, ...r });
    opts.progress?.log(`eval @ ${step}: ${describeEval(r)}`);
    if (opts.best) await track(r);
  };

  /** Whether `since` evaluations that are not better end the run (never at its last step). */
  const stopsEarly = (since: number) => {
    const patience = opts.best!.patience;
    return patience !== undefined && since >= patience && result.status === "done" && step < totalSteps;
  };

  /** Compare an evaluation with the best so far: keep it if better, else count towards patience. */
  const track = async (r: EvalResult) => {
    const metric = opts.best!.metric ?? defaultMetric(r);
    const value = r[metric];
    if (value === undefined) {
      const reported = Object.keys(r).filter((k) => k !== "examples" && k !== "targets").join(", ");
      throw new Error(
        `train: the evaluation reports no ${metric} to find the best one by (it reports ${reported})`,
      );
    }
    // a resumed run that compares another metric starts its best afresh; NaN is never better
    const first = !best || best.metric !== metric;
    const better = !Number.isNaN(value) &&
      (first || (metric === "loss" ? value < best!.value : value > best!.value));
    if (better) {
      best = { step, metric, value, since: 0 };
      const write = opts.writeBest ?? opts.writeWeights;
      if (opts.best!.save && opts.outDir && write) await write(join(opts.outDir, BEST_DIR));
      await opts.log?.write({ type: "best", step, metric, value });
    } else if (first) {
      opts.progress?.log(`eval @ ${step}: ${metric} is NaN, no best evaluation yet`);
      // the first sets transformers' reference (None, then -inf); each later one is not better
      unranked++;
      if (stopsEarly(unranked - 1)) {
        result.status = "early";
        opts.progress?.log(
          `stopping early at step ${step}: ${metric} was NaN in ${unranked} evaluations, with no best one`,
        );
      }
    } else {
      best = { ...best!, since: best!.since + 1 };
      if (stopsEarly(best.since)) {
        result.status = "early";
        opts.progress?.log(
          `stopping early at step ${step}: no better ${metric} in ${opts.best!.patience} evaluations (best ${
            best.value.toFixed(4)
          } at step ${best.step})`,
        );
      }
    }
    result.best = best;
  };

  const checkpoint = async () => {
    if (!opts.outDir || !opts.writeWeights) return;
    const interval = await settle();
    const exported = await opt.exportState();
    const bad = exported.m.findIndex((m, i) => !allFinite(m) || !allFinite(exported.v[i]));
    if (bad >= 0) {
      throw new TrainingDivergedError(
        `the optimiser state of "${names[bad]}" holds NaN or infinity at step ${step}; training stopped ` +
          `and the last good checkpoint in ${opts.outDir} is kept. Lower the learning rate or set --max-grad-norm`,
      );
    }
    const state: TrainerState = {
      step,
      totalSteps,
      position: data.positionAt(stepBatches(step, micro, data.stepsPerEpoch).first),
      rng: { seed: opts.seed, step },
      fingerprint: opts.fingerprint ?? {},
      args: opts.args ?? opts.resumeFrom?.state.args,
      ...(best ? { best } : {}),
      ...(!best && unranked > 0 ? { unranked } : {}),
      ...(result.status === "early" ? { stoppedEarly: true } : {}),
      ...(interval ? { interval } : {}),
      elapsed: round3(elapsedBefore + (performance.now() - started) / 1000),
      tokens: tokensBefore + result.tokens,
    };
    const optimizer: OptimizerState = { names, ...exported };
    await saveCheckpoint(opts.outDir, state, optimizer, opts.writeWeights);
    await opts.log?.write({ type: "checkpoint", step });
  };

  try {
    if (over) return result;
    opts.progress?.update(step, {});
    const ended = () => result.status !== "done"; // a function: the evaluations may end the run
    // steps between the checkpoints written on the way
    const saveEvery = opts.outDir && opts.writeWeights ? opts.saveEvery ?? 0 : 0;
    while (step < totalSteps && !ended()) {
      const { first, count } = stepBatches(step, micro, data.stepsPerEpoch);
      const batches = Array.from({ length: count }, (_, j) => data.batch(data.positionAt(first + j)));
      const counts = batches.map((b) => lossCount(b, task));
      const targets = counts.reduce((a, b) => a + b, 0);
      const factor = lrFactor(step, schedule);
      setTraining(true);
      batches.forEach((batch, j) => {
        // dropout masks are keyed by the batch's index, so each batch of a step gets its own
        if ("dropoutStep" in keyed) keyed.dropoutStep = first + j;
        tidy(() => {
          const full = batchLoss(model, batch, task);
          const loss = count === 1 ? full : scale(full, targets > 0 ? counts[j] / targets : 1 / count);
          loss.backward();
          const next = keep(noGrad(() => add(acc, loss)));
          acc.dispose();
          acc = next;
        });
      });
      opt.step(factor);
      opt.zeroGrad();
      gpu.stream.flush();
      // batches of other shapes (--group-by-length, an epoch's short last batch) leave free
      // buffers of size classes this step did not use: give them back before they pile up
      gpu.pool.releaseIdle();
      step++;
      accSteps++;
      result.steps = step;
      for (const b of batches) result.tokens += batchTokens(b);
      opts.progress?.update(step, { tokens: result.tokens });
      if (step % logEvery === 0 || step === totalSteps) await queueRead(step);
      // a turn of the event loop, so that a signal listener (Ctrl-C) runs before shouldStop is asked
      await nextTurn();
      const stop = step < totalSteps && (opts.shouldStop?.(step) ?? false);
      // evaluated even when stopping here, so that a resumed run has every evaluation
      if (opts.evalEvery && step % opts.evalEvery === 0 && step < totalSteps) {
        await settle();
        await runEval();
        if (ended()) break;
      }
      if (stop) {
        result.status = "stopped";
        break;
      }
      if (saveEvery > 0 && step % saveEvery === 0 && step < totalSteps) await checkpoint();
    }
    // a run that ended early logs its last, partial interval (a finished run's was logged at its
    // last step); a stopped run's goes into the checkpoint, for the resumed run's next record
    if (accSteps > 0 && result.status !== "stopped") await queueRead(step);
    await settle();
    setTraining(false);
    // a run resumed after its last step (killed before its output was written) was evaluated already
    if (result.status === "done" && (opts.resumeFrom?.state.step ?? 0) < totalSteps) await runEval();
    await checkpoint();
  } catch (e) {
    // a step that failed half-way leaves gradients behind; an unread interval is discarded
    pending?.catch(() => {});
    throw e;
  } finally {
    setTraining(false);
    opt.zeroGrad();
    opt.dispose();
    acc.dispose();
    opts.progress?.done();
    result.seconds = (performance.now() - started) / 1000;
  }
  return result;
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

/**
 * What a run's best evaluation is by default: the entity F1 of a token classifier with entity tags,
 * else accuracy when reported, else Pearson correlation (regression), else the loss.
 */
export function defaultMetric(r: EvalResult): BestMetric {
  return r.precision !== undefined
    ? "f1"
    : r.accuracy !== undefined
    ? "accuracy"
    : r.pearson !== undefined
    ? "pearson"
    : "loss";
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
