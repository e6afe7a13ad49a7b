/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped, in one
 * directory `<out>/checkpoint/`:
 * - the trained weights (`adapter/`, a PEFT adapter directory, or `model/` for full
 *   fine-tuning), written by the caller's `writeWeights`;
 * - `optimizer.safetensors`: AdamW's first and second moments of every trained parameter
 *   (`m.<i>`, `v.<i>`, F32, in update order) with the parameter names and step counts in the
 *   metadata;
 * - `trainer_state.json`: optimiser steps done, the data position of the next batch, the seed
 *   and step that key the data order and dropout (the only random state of a run), the run's
 *   settings fingerprint, elapsed time.
 *
 * A save writes a fresh folder beside the target and swaps it in with renames, so a crash
 * leaves the previous checkpoint or the new one, never a mix; a crash between the two renames
 * leaves the previous one as `.checkpoint.<id>.old`, which {@link loadCheckpoint} picks up.
 * @module
 */
import { join } from "node:path";
import { leftoverPattern, writeDirAtomic, WriteError, writeFileAtomic } from "../io/atomic.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../io/safetensors_write.ts";
import type { Position } from "./batches.ts";
import { pathExists } from "../io/paths.ts";

/** The checkpoint folder's name inside a run's output directory. */
export const CHECKPOINT_DIR = "checkpoint";
const STATE_FILE = "trainer_state.json";
const OPTIMIZER_FILE = "optimizer.safetensors";
const FORMAT = "hartley-checkpoint-1";

/** What a run needs to continue (besides weights and optimiser moments). */
export interface TrainerState {
  /** Optimiser steps done. */
  step: number;
  /** The run's total optimiser steps. */
  totalSteps: number;
  /** Where the next batch comes from. */
  position: Position;
  /**
   * The run's random state: data order is a pure function of (seed, epoch) and dropout masks
   * of (seed, step), so the seed and the step restore both exactly.
   */
  rng: { seed: number; step: number };
  /** Settings that must match to resume (model, data, method, hyper-parameters). */
  fingerprint: Record<string, unknown>;
  /** Seconds of training so far (all sessions). */
  elapsed: number;
  /** Tokens (or images) trained on so far. */
  tokens: number;
  /** The command-line options the run was started with (so `--resume` alone can continue it). */
  args?: string[];
  /** The best evaluation so far, when the run tracks one. */
  best?: BestState;
  /** Evaluations so far, all NaN, when the run tracks a best and has none yet (they count towards patience). */
  unranked?: number;
  /** The run stopped early (`best.patience`): it is over, resuming it trains no further. */
  stoppedEarly?: true;
  /**
   * The training-loss interval open at the checkpoint (saved between logging steps): the summed
   * loss and its steps, which the resumed run's next log record includes, as the uninterrupted
   * run's does.
   */
  interval?: { loss: number; steps: number };
}

/** An evaluation metric that picks the best evaluation. */
export type BestMetric =
  | "loss"
  | "accuracy"
  | "mcc"
  | "f1"
  | "f1Macro"
  | "precision"
  | "recall"
  | "pearson"
  | "spearman"
  | "tokenAccuracy";

/** The best evaluation of a run so far (see the trainer's `best` option). */
export interface BestState {
  /** The step it ran after. */
  step: number;
  /** What was compared (loss: lower is better; the others: higher). */
  metric: BestMetric;
  /** Its value. */
  value: number;
  /** Evaluations since then that were not better. */
  since: number;
}

/** Optimiser state as {@link AdamW.exportState} gives it, with the parameter names. */
export interface OptimizerState {
  /** The trained parameters' names, in update order. */
  names: string[];
  /** AdamW's first moment of each parameter. */
  m: Float32Array[];
  /** AdamW's second moment of each parameter. */
  v: Float32Array[];
  /** Updates applied to each parameter (for bias correction). */
  steps: number[];
}

/** A checkpoint read back. */
export interface LoadedCheckpoint {
  /** The folder it was read from. */
  dir: string;
  /** The trainer state (`trainer_state.json`). */
  state: TrainerState;
  /** The optimiser moments and step counts (`optimizer.safetensors`). */
  optimizer: OptimizerState;
}

/** A missing, partial or inconsistent checkpoint, or one that does not fit the run. */
export class CheckpointError extends Error {
  /** Always "CheckpointError". */
  override name = "CheckpointError";
}

/**
 * Write the checkpoint of a run into `<outDir>/checkpoint/` atomically. `writeWeights` writes
 * the trained weights into the fresh folder it is given. A write the file system refuses is a
 * {@link WriteError} that also says which checkpoint is kept.
 */
export async function saveCheckpoint(
  outDir: string,
  state: TrainerState,
  optimizer: OptimizerState,
  writeWeights: (dir: string) => Promise<void>,
): Promise<void> {
  try {
    // writeDirAtomic leaves a crash mid-swap as `.checkpoint.<id>.old`, which findCheckpoint reads.
    await writeDirAtomic(join(outDir, CHECKPOINT_DIR), async (tmp) => {
      await writeWeights(tmp);
      const tensors: Record<string, TensorData> = {};
      optimizer.m.forEach((m, i) => {
        tensors[`m.${i}`] = { dtype: "F32", shape: [m.length], data: m };
        tensors[`v.${i}`] = { dtype: "F32", shape: [optimizer.v[i].length], data: optimizer.v[i] };
      });
      await writeSafetensors(join(tmp, OPTIMIZER_FILE), tensors, {
        format: FORMAT,
        names: JSON.stringify(optimizer.names),
        steps: JSON.stringify(optimizer.steps),
      });
      await writeFileAtomic(
        join(tmp, STATE_FILE),
        JSON.stringify({ format: FORMAT, ...state }, null, 2) + "\n",
      );
    });
  } catch (e) {
    if (!(e instanceof WriteError)) throw e;
    throw new WriteError(e.path, `${e.reason}. ${await notWritten(outDir, state.step)}`, {
      cause: e.cause,
      checkpointTold: true,
    });
  }
}

/**
 * What a failed save of step `step`'s checkpoint leaves: the previous checkpoint, which a resumed
 * run continues from, or none.
 */
async function notWritten(outDir: string, step: number): Promise<string> {
  const dir = await findCheckpoint(outDir).catch(() => null);
  const kept = dir === null ? NaN : await Deno.readTextFile(join(dir, STATE_FILE))
    .then((text) => Number(JSON.parse(text).step))
    .catch(() => NaN);
  return `The checkpoint of step ${step} was not written` +
    (Number.isFinite(kept)
      ? `; the one of step ${kept} in ${dir} is kept: once the cause is fixed, --resume continues from it`
      : `, and there is no earlier one to resume from`);
}

/**
 * The checkpoint folder of `outDir`: `checkpoint/`, or else the latest (by step) of those a crash
 * mid-swap left aside; null if none.
 */
export async function findCheckpoint(outDir: string): Promise<string | null> {
  const target = join(outDir, CHECKPOINT_DIR);
  if (await pathExists(join(target, STATE_FILE))) return target;
  let best: { dir: string; step: number } | null = null;
  const leftover = leftoverPattern([CHECKPOINT_DIR]);
  try {
    for await (const e of Deno.readDir(outDir)) {
      if (e.isDirectory && leftover.exec(e.name)?.[2] === "old") {
        const dir = join(outDir, e.name);
        const step = await Deno.readTextFile(join(dir, STATE_FILE))
          .then((text) => Number(JSON.parse(text).step))
          .catch(() => NaN);
        if (Number.isFinite(step) && (!best || step > best.step)) best = { dir, step };
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return best?.dir ?? null;
}

/** Read the checkpoint of `outDir` (see {@link findCheckpoint}). */
export async function loadCheckpoint(outDir: string): Promise<LoadedCheckpoint> {
  const dir = await findCheckpoint(outDir);
  if (!dir) {
    throw new CheckpointError(`${outDir}: no checkpoint to resume from (no ${CHECKPOINT_DIR}/${STATE_FILE})`);
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await Deno.readTextFile(join(dir, STATE_FILE)));
  } catch (e) {
    throw new CheckpointError(`${join(dir, STATE_FILE)}: unreadable (${(e as Error).message})`);
  }
  if (raw.format !== FORMAT) {
    throw new CheckpointError(
      `${join(dir, STATE_FILE)}: format ${JSON.stringify(raw.format)}, expected "${FORMAT}"`,
    );
  }
  const state = raw as unknown as TrainerState;
  const ok = Number.isSafeInteger(state.step) && Number.isSafeInteger(state.totalSteps) &&
    Number.isSafeInteger(state.position?.epoch) && Number.isSafeInteger(state.position?.step) &&
    typeof state.fingerprint === "object" && Number.isSafeInteger(state.rng?.seed);
  if (!ok) throw new CheckpointError(`${join(dir, STATE_FILE)}: missing or malformed fields`);
  const file = await openSafetensors(join(dir, OPTIMIZER_FILE));
  let names: string[], steps: number[];
  try {
    names = JSON.parse(file.metadata.names);
    steps = JSON.parse(file.metadata.steps);
  } catch {
    throw new CheckpointError(`${file.path}: the metadata lacks the parameter names and step counts`);
  }
  if (!Array.isArray(names) || !Array.isArray(steps) || names.length !== steps.length) {
    throw new CheckpointError(
      `${file.path}: ${names?.length} parameter names but ${steps?.length} step counts`,
    );
  }
  const m: Float32Array[] = [], v: Float32Array[] = [];
  for (let i = 0; i < names.length; i++) {
    m.push(await file.readF32(`m.${i}`));
    v.push(await file.readF32(`v.${i}`));
  }
  return { dir, state, optimizer: { names, m, v, steps } };
}

/**
 * The settings in which `saved` and `current` differ (as "key: saved → current"), ignoring
 * keys listed in `free` (e.g. the total steps, which a resumed run may extend).
 */
export function fingerprintChanges(
  saved: Record<string, unknown>,
  current: Record<string, unknown>,
  free: readonly string[] = [],
): string[] {
  const keys = new Set([...Object.keys(saved), ...Object.keys(current)]);
  const out: string[] = [];
  for (const k of keys) {
    if (free.includes(k)) continue;
    const a = saved[k], b = current[k];
    if (isRecord(a) && isRecord(b)) {
      // an adapter config: name the fields that differ, not two whole objects
      out.push(...fingerprintChanges(a, b).map((change) => `${k}.${change}`));
      continue;
    }
    const as = JSON.stringify(a), bs = JSON.stringify(b);
    if (as !== bs) out.push(`${k}: ${as ?? "unset"} → ${bs ?? "unset"}`);
  }
  return out;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}
