/**
 * The progress displays of the commands' longer work (loading a checkpoint, tokenizing, decoding
 * images), and what loading read otherwise than as stored (renamed, unused or new tensors), as
 * transformers logs it.
 * @module
 */
import type { LoadNotes } from "../models/load.ts";
import { Progress, type ProgressSink } from "../train/progress.ts";

/** Checkpoints at least this large show a loading progress display. */
const SHOW_LOADING_BYTES = 256 * 2 ** 20;
const MIB = 2 ** 20;
/** Examples (instructions, rows grouped by length) to tokenize that show a progress display, from. */
export const SHOW_EXAMPLES = 2000;
/** Characters (or bytes) of text to tokenize that show a progress display, from (about a second's work). */
export const SHOW_CHARACTERS = 2 ** 20;
/** Images to decode that show a progress display, from. */
export const SHOW_IMAGES = 256;

/** How {@link progressFrom} shows the work. */
export interface ProgressShown {
  /** Items of work a step of the display counts (default 1): e.g. 2 ** 20 bytes a MiB. */
  per?: number;
  /** What a step is, for a rate of steps a second shown (default: no rate). */
  unit?: string;
  /** Default Deno.stderr. */
  sink?: ProgressSink;
}

/**
 * An `onProgress` that shows work of `from` items or more on stderr as `label` and the steps done
 * of all (a bar on a terminal, a line every 5 seconds otherwise; less work takes moments, and shows
 * none); nothing when `quiet`. Each run of work takes a new one.
 */
export function progressFrom(
  from: number,
  label: string,
  quiet = false,
  { per = 1, unit, sink }: ProgressShown = {},
): ((done: number, total: number) => void) | undefined {
  if (quiet) return undefined;
  let progress: Progress | null = null, finished = false;
  return (done, total) => {
    if (total < from || finished) return; // the work told again that it is done: shown once
    progress ??= new Progress(Math.ceil(total / per), { label, unit, plainInterval: 5, sink });
    const steps = done === total ? progress.total : Math.floor(done / per);
    progress.update(steps, unit ? { tokens: steps } : {});
    if (done === total) {
      progress.done();
      finished = true;
    }
  };
}

/**
 * A loadModel `onProgress` that shows the checkpoint's loading in MiB on stderr, for checkpoints
 * over 256 MiB (smaller ones load in moments); nothing when `quiet`.
 */
export function loadingProgress(
  quiet = false,
  sink?: ProgressSink,
): ((done: number, total: number) => void) | undefined {
  return progressFrom(SHOW_LOADING_BYTES, "loading MiB", quiet, { per: MIB, unit: "MiB", sink });
}

/**
 * An `onProgress` that shows a model's writing in MiB on stderr (merge's), for models over 256 MiB,
 * as {@link loadingProgress} shows their loading.
 */
export function writingProgress(): ((done: number, total: number) => void) | undefined {
  return progressFrom(SHOW_LOADING_BYTES, "writing MiB", false, { per: MIB, unit: "MiB" });
}

/** Names listed in a line of {@link loadNoteLines}; the rest are counted. */
const NAMES_SHOWN = 3;

/**
 * The lines that tell what loading read otherwise than as stored (nothing when all was read as
 * stored): tensors renamed as transformers renames them, heads of another shape, parameters
 * initialised new, checkpoint tensors left unused. Each counts its tensors and names the first few.
 * `kept`: parameters initialised new that something else then replaced (an adapter's trained head).
 */
export function loadNoteLines(notes: LoadNotes, kept: ReadonlySet<string> = new Set()): string[] {
  const some = (names: readonly string[]) =>
    `${names.length} (${names.slice(0, NAMES_SHOWN).join(", ")}${names.length > NAMES_SHOWN ? ", …" : ""})`;
  const mismatched = notes.mismatched.filter((m) => !kept.has(m.key));
  const resized = new Set(mismatched.map((m) => m.key));
  const fresh = notes.initialised.filter((k) => !kept.has(k) && !resized.has(k));
  const lines: string[] = [];
  if (notes.renamed.length > 0) {
    const [stored, name] = notes.renamed[0];
    lines.push(
      `checkpoint tensors renamed as transformers renames them: ${notes.renamed.length} ` +
        `(${stored} as ${name}${notes.renamed.length > 1 ? ", …" : ""})`,
    );
  }
  if (mismatched.length > 0) {
    const shown = mismatched.slice(0, NAMES_SHOWN).map((m) => `${m.key} [${m.stored}] → [${m.expected}]`);
    lines.push(
      `size mismatch with the checkpoint, initialised new: ${mismatched.length} (${shown.join(", ")}` +
        `${mismatched.length > NAMES_SHOWN ? ", …" : ""})`,
    );
  }
  if (fresh.length > 0) lines.push(`not in the checkpoint, initialised new: ${some(fresh)}`);
  if (notes.unused.length > 0) lines.push(`checkpoint tensors not used: ${some(notes.unused)}`);
  if (notes.generationConfigIgnored) {
    lines.push(`ignored, as transformers ignores it: ${notes.generationConfigIgnored}`);
  }
  return lines;
}
