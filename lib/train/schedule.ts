/**
 * Learning-rate schedules as plain functions of the step, with Hugging Face's semantics
 * (`get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup`,
 * `get_constant_schedule_with_warmup`): the factor for optimiser step `step` (0-based).
 * @module
 */

/** A schedule's shape. */
export interface ScheduleOptions {
  /** Steps of linear warmup from 0 to 1. */
  warmupSteps: number;
  /** Total optimiser steps (the decay reaches 0 here). */
  totalSteps: number;
  /** What follows the warmup; default linear. */
  decay?: "linear" | "cosine" | "constant";
  /** Cosine waves over the decay (HF `num_cycles`); default 0.5, a half wave down to 0. */
  cycles?: number;
}

/** The multiplier of the base learning rate at `step`. */
export function lrFactor(step: number, opts: ScheduleOptions): number {
  const { warmupSteps: warmup, totalSteps: total } = opts;
  if (!(warmup >= 0 && total >= 0)) {
    throw new Error(`lrFactor: warmup ${warmup} and total ${total} must be ≥ 0`);
  }
  if (step < warmup) return step / Math.max(1, warmup);
  const decay = opts.decay ?? "linear";
  if (decay === "constant") return 1;
  if (decay === "linear") return Math.max(0, (total - step) / Math.max(1, total - warmup));
  const progress = (step - warmup) / Math.max(1, total - warmup);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * (opts.cycles ?? 0.5) * 2 * progress)));
}

/** The learning rate at `step`: `lr · lrFactor(step, opts)`. */
export function lrAt(step: number, lr: number, opts: ScheduleOptions): number {
  return lr * lrFactor(step, opts);
}
