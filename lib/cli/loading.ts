/**
 * The display of a checkpoint's loading, for the commands that load models.
 * @module
 */
import { Progress, type ProgressSink } from "../train/progress.ts";

/** Checkpoints at least this large show a loading progress display. */
const SHOW_LOADING_BYTES = 256 * 2 ** 20;
const MIB = 2 ** 20;

/**
 * A loadModel `onProgress` that shows the checkpoint's loading on stderr (a bar on a terminal,
 * a line every few seconds otherwise), for checkpoints over 256 MiB (smaller ones load in
 * moments); nothing when `quiet`.
 */
export function loadingProgress(
  quiet = false,
  sink?: ProgressSink,
): ((done: number, total: number) => void) | undefined {
  if (quiet) return undefined;
  let progress: Progress | null = null;
  return (done, total) => {
    if (total < SHOW_LOADING_BYTES) return;
    progress ??= new Progress(Math.ceil(total / MIB), {
      label: "loading MiB",
      unit: "MiB",
      plainInterval: 5,
      sink,
    });
    const mib = Math.floor(done / MIB);
    progress.update(done === total ? progress.total : mib, { tokens: mib });
    if (done === total) progress.done();
  };
}
