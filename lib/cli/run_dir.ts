/**
 * A training run's output directory across sessions: the options a resumed run was started
 * with, the options that define a run (stored in its checkpoints), and refusing to mix a new run
 * into a directory that holds another one, or to resume a run that is over.
 * @module
 */
import { join } from "node:path";
import { isWithin, pathExists } from "../io/paths.ts";
import { leftoverPattern } from "../io/atomic.ts";
import { findCheckpoint, loadCheckpoint } from "../train/checkpoint.ts";
import { BEST_DIR } from "../train/trainer.ts";
import { ArgsError } from "./args.ts";
import { checkOutputDir } from "./output.ts";

/**
 * With `--resume`, the options the run was started with (from its checkpoint) go first, so
 * `train --resume --out DIR` alone continues it; options given now come after and win.
 */
export async function withSavedArgs(args: string[], defaultOut: string): Promise<string[]> {
  const out = resumedOut(args, defaultOut);
  if (!out) return args;
  const saved = (await savedState(out))?.args;
  return Array.isArray(saved) && saved.every((a) => typeof a === "string") ? [...saved, ...args] : args;
}

/**
 * The settings the run in `outDir` was started with (its checkpoint's fingerprint), which a resumed
 * run must share; null when it has no readable checkpoint (loading it says why).
 */
export async function savedSettings(outDir: string): Promise<Record<string, unknown> | null> {
  const fingerprint = (await savedState(outDir))?.fingerprint;
  return typeof fingerprint === "object" && fingerprint !== null
    ? fingerprint as Record<string, unknown>
    : null;
}

/** The checkpoint's trainer_state.json in `outDir`, unchecked; null when there is none or it is not JSON. */
async function savedState(outDir: string): Promise<Record<string, unknown> | null> {
  const ckpt = await findCheckpoint(outDir).catch(() => null);
  if (!ckpt) return null;
  try {
    return JSON.parse(await Deno.readTextFile(join(ckpt, "trainer_state.json")));
  } catch {
    return null;
  }
}

/**
 * The run directory a command line with `--resume` continues (its `--out`, else `defaultOut`), read
 * before the flags are parsed; null without `--resume` (or without --out's value).
 */
export function resumedOut(args: string[], defaultOut: string): string | null {
  if (!args.includes("--resume")) return null;
  const i = args.findIndex((a) => a === "--out" || a.startsWith("--out="));
  const out = i < 0 ? defaultOut : args[i].startsWith("--out=") ? args[i].slice(6) : args[i + 1];
  return out || null;
}

/** The options that define a run, without those that only steer one session. */
export function runArgs(args: string[]): string[] {
  const once = new Set(["--resume", "--overwrite", "--stop-at", "--quiet", "-q"]);
  const out: string[] = [];
  for (let k = 0; k < args.length; k++) {
    const name = args[k].split("=")[0];
    if (once.has(name)) {
      if (name === "--stop-at" && !args[k].includes("=")) k++;
      continue;
    }
    out.push(args[k]);
  }
  return out;
}

/** `words` as one shell command line: a word with spaces or other special characters single-quoted. */
export function shellLine(words: readonly string[]): string {
  return words.map((w) => /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`).join(" ");
}

/**
 * Refuse to mix a new run into an output directory that holds another one, or one whose run would
 * replace what it reads (`reads`: paths by flag name, undefined where not given). Removes nothing:
 * with `overwrite`, {@link clearOutDir} does that once the new run has checked its data and model.
 */
export async function checkOutDir(
  outDir: string,
  resume: boolean,
  overwrite: boolean,
  reads: Record<string, string | undefined> = {},
): Promise<void> {
  if (resume && overwrite) throw new ArgsError(`--resume and --overwrite contradict each other`);
  await checkOutputDir("out", outDir); // a folder, or one that can be made
  await checkReadsOutsideRun(outDir, reads);
  if (resume) {
    if (!(await findCheckpoint(outDir))) {
      throw new ArgsError(`--resume: ${outDir} holds no checkpoint (start the run without --resume)`);
    }
    const over = await overReason(outDir);
    if (over) throw new ArgsError(`--resume: the run in ${outDir} ${over}; it is over: ${START_OVER}`);
    return;
  }
  const outputs = [];
  for (const name of OUTPUTS) if (await pathExists(join(outDir, name))) outputs.push(name);
  // a run's outputs lie beside its log; a log alone is what a run that failed before its first
  // checkpoint left: nothing to keep
  const held = (await findCheckpoint(outDir)) !== null ||
    (outputs.length > 0 && await pathExists(join(outDir, "log.jsonl")));
  if (!held && outputs.length > 0) {
    // not a run's (a user's own model/, say): neither a new run nor --overwrite may replace it
    const found = join(outDir, outputs[0]);
    throw new ArgsError(
      `--out ${outDir} holds ${found} but no run (no log.jsonl or checkpoint beside it): ` +
        `a run there would replace it; move it or give another --out`,
    );
  }
  if (!held || overwrite) return;
  const over = await overReason(outDir);
  throw new ArgsError(
    over
      ? `${outDir} already holds a run that ${over}: pass --overwrite to start over, or another --out`
      : `${outDir} already holds a run: pass --resume to continue it, --overwrite to start over, or another --out`,
  );
}

const START_OVER = "start a new one with --overwrite or another --out";

/**
 * Why the run in `outDir` cannot be resumed (`stopped early at step 4 (…)`, `is finished (step 9 of
 * 9)`), or null when it can. A run killed between its last checkpoint and its final output is not
 * over: resuming it writes that output.
 */
async function overReason(outDir: string): Promise<string | null> {
  const written = (await pathExists(join(outDir, "adapter"))) || (await pathExists(join(outDir, "model")));
  if (!written) return null;
  if (!(await findCheckpoint(outDir))) return "is finished";
  const { state } = await loadCheckpoint(outDir);
  const b = state.best;
  if (state.stoppedEarly) {
    return `stopped early at step ${state.step}` +
      (b ? ` (best ${b.metric} ${b.value.toFixed(4)} at step ${b.step})` : "");
  }
  return state.step >= state.totalSteps ? `is finished (step ${state.step} of ${state.totalSteps})` : null;
}

/** What a run writes into its output directory, each replaced as a whole (lib/io/atomic.ts). */
const RUN_FILES = ["checkpoint", "adapter", "model", BEST_DIR, "log.jsonl"];

/** What an interrupted write of one of {@link RUN_FILES} leaves beside it; findCheckpoint reads a set-aside checkpoint. */
const LEFTOVER = leftoverPattern(RUN_FILES);

/** The folders of {@link RUN_FILES} a run's output goes in. */
const OUTPUTS = ["adapter", "model", BEST_DIR];

/**
 * Where pretrain keeps the init/ of the run an --overwrite replaces until the new run starts
 * (lib/cli/pretrain.ts): removed with that run's files, put back if the new run is refused.
 */
export const PREVIOUS_INIT = "init.previous";

/** The names in `outDir` that a run writes as a whole and --overwrite removes (those there or not). */
async function runEntries(outDir: string): Promise<string[]> {
  const names = [...RUN_FILES, PREVIOUS_INIT];
  try {
    for await (const e of Deno.readDir(outDir)) if (LEFTOVER.test(e.name)) names.push(e.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names;
}

/** Remove a previous run's files from `outDir` (--overwrite, just before the new run starts). */
export async function clearOutDir(outDir: string): Promise<void> {
  for (const name of await runEntries(outDir)) {
    await Deno.remove(join(outDir, name), { recursive: true }).catch(() => {});
  }
}

/**
 * Refuse a run in `outDir` that reads a path (`reads`: by flag name) from what the run replaces
 * there, or --overwrite removes: `--model OUT/model` fine-tuning a full run's output into the same
 * --out would delete the model it trains, and leave the new adapter without its base.
 */
async function checkReadsOutsideRun(
  outDir: string,
  reads: Record<string, string | undefined>,
): Promise<void> {
  const names = await runEntries(outDir);
  for (const [flag, path] of Object.entries(reads)) {
    const name = path === undefined ? undefined : names.find((n) => isWithin(path, join(outDir, n)));
    if (name === undefined) continue;
    throw new ArgsError(
      `--${flag} ${path} lies in ${join(outDir, name)}, which a run in --out ${outDir} replaces ` +
        `(and --overwrite removes): give another --out, or move it out of there first`,
    );
  }
}
