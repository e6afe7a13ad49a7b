/**
 * A training progress display: on a terminal, one bar redrawn in place on stderr (steps,
 * percent, loss, tokens/s, ETA); otherwise (a pipe, a file, CI) a plain line every few
 * seconds. A small implementation of its own rather than an npm package: it needs only
 * `isTerminal` and `writeSync`, and the plain mode is what logs want.
 * @module
 */

/** Where the display writes: stderr by default. */
export interface ProgressSink {
  /** Write some of `p`; returns the number of bytes written. */
  writeSync(p: Uint8Array): number;
  /** Whether the sink is a terminal (then the display draws a bar). */
  isTerminal(): boolean;
}

/** Options of {@link Progress}. */
export interface ProgressOptions {
  /** Shown before the bar, e.g. "train". */
  label?: string;
  /** Default Deno.stderr. */
  sink?: ProgressSink;
  /** Force bar (true) or plain lines (false); default: a bar when the sink is a terminal. */
  tty?: boolean;
  /** Seconds between plain lines (default 10). */
  plainInterval?: number;
  /** Steps already done when this display starts (a resumed run): the ETA counts from here. */
  startStep?: number;
  /** What `tokens` counts, for the rate (default "tok"; e.g. "img" for images). */
  unit?: string;
  /** Print nothing (tests). */
  silent?: boolean;
  /** Clock in milliseconds (tests); default performance.now. */
  now?: () => number;
}

/** The numbers shown with the bar. */
export interface ProgressStats {
  /** The latest loss read back (it lags the step by up to the log interval). */
  loss?: number;
  /** Tokens (or images) processed since the display started. */
  tokens?: number;
  /** Anything else to show, e.g. "acc 0.91". */
  note?: string;
}

const BAR = 24;

/** The displays whose bar is drawn on a terminal now (their line not yet ended). */
const drawnBars = new Set<Progress>();

/** Format seconds as 1h02m, 3m05s or 42s. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** A progress bar (terminal) or periodic progress lines (anything else). */
export class Progress {
  /** Whether this display draws a redrawn bar (true) or plain lines (false). */
  readonly tty: boolean;
  #sink: ProgressSink;
  #label: string;
  #unit: string;
  #interval: number;
  #silent: boolean;
  #now: () => number;
  #start: number;
  #startStep: number;
  #lastDraw = -Infinity;
  #drawn = false;
  #step = 0;
  #stats: ProgressStats = {};
  #enc = new TextEncoder();
  #drawnStep = -1;

  /** A display for a run of `total` optimiser steps; the clock starts now. */
  constructor(readonly total: number, opts: ProgressOptions = {}) {
    this.#sink = opts.sink ?? Deno.stderr;
    this.tty = opts.tty ?? this.#sink.isTerminal();
    this.#label = opts.label ?? "train";
    this.#unit = opts.unit ?? "tok";
    this.#interval = (opts.plainInterval ?? 10) * 1000;
    this.#silent = opts.silent ?? false;
    this.#now = opts.now ?? (() => performance.now());
    this.#start = this.#now();
    this.#startStep = opts.startStep ?? 0;
    this.#step = this.#startStep;
  }

  /** Report that `step` steps are done; redraws at most 10 times a second (a plain line every interval). */
  update(step: number, stats: ProgressStats = {}): void {
    // a late loss readback reports an earlier step: keep the furthest step seen
    this.#step = Math.max(this.#step, step);
    step = this.#step;
    this.#stats = { ...this.#stats, ...stats };
    const now = this.#now();
    const last = step >= this.total;
    const due = this.tty
      ? now - this.#lastDraw >= 100 || last
      : now - this.#lastDraw >= this.#interval || (last && this.#drawnStep !== step);
    if (!due) return;
    this.#lastDraw = now;
    this.#draw();
  }

  /** The current line (without control characters). */
  line(): string {
    const step = this.#step, total = this.total;
    const elapsed = (this.#now() - this.#start) / 1000;
    const done = step - this.#startStep;
    const frac = total > 0 ? Math.min(1, step / total) : 1;
    const parts = [`${this.#label} ${String(step).padStart(String(total).length)}/${total}`];
    if (this.tty) {
      const fill = Math.round(frac * BAR);
      parts.unshift(`[${"#".repeat(fill)}${"-".repeat(BAR - fill)}]`);
    }
    parts.push(`${(frac * 100).toFixed(0).padStart(3)}%`);
    const { loss, tokens, note } = this.#stats;
    if (loss !== undefined) parts.push(`loss ${Number.isFinite(loss) ? loss.toFixed(4) : String(loss)}`);
    if (tokens !== undefined && elapsed > 0) parts.push(`${Math.round(tokens / elapsed)} ${this.#unit}/s`);
    if (note) parts.push(note);
    const eta = done > 0 ? (elapsed / done) * (total - step) : NaN;
    parts.push(step >= total ? `done in ${formatDuration(elapsed)}` : `ETA ${formatDuration(eta)}`);
    return parts.join("  ");
  }

  /** Print a message on its own line (the bar is redrawn below it). */
  log(message: string): void {
    if (this.#silent) return;
    if (this.tty && this.#drawn) this.#write("\r\x1b[2K");
    this.#write(message + "\n");
    if (this.tty && this.#drawn) this.#write(this.line());
  }

  /** Draw the final state and end the bar's line. */
  done(): void {
    if (this.#silent) return;
    if (this.tty || this.#drawnStep !== this.#step) this.#draw();
    if (this.tty) this.#write("\n");
    this.#drawn = false;
    drawnBars.delete(this);
  }

  /**
   * Print `message` on its own line on stderr: through a bar drawn on a terminal now, if any (it
   * is redrawn below the message), else with console.error. For what is printed while a display
   * may be drawn (a data reader's warnings), which would otherwise land on the bar's line.
   */
  static print(message: string): void {
    const bar = [...drawnBars].at(-1);
    if (bar) bar.log(message);
    else console.error(message);
  }

  /**
   * End the line of every bar drawn on a terminal now, so that what is printed next (an error that
   * stopped the work it showed) starts on a fresh line; a later update draws the bar again.
   */
  static endLines(): void {
    for (const bar of drawnBars) {
      bar.#write("\n");
      bar.#drawn = false;
    }
    drawnBars.clear();
  }

  #draw(): void {
    if (this.#silent) return;
    this.#drawnStep = this.#step;
    if (this.tty) {
      this.#write(`\r\x1b[2K${this.line()}`);
      this.#drawn = true;
      drawnBars.add(this);
    } else {
      this.#write(this.line() + "\n");
    }
  }

  #write(text: string): void {
    const bytes = this.#enc.encode(text);
    let done = 0;
    while (done < bytes.length) done += this.#sink.writeSync(bytes.subarray(done));
  }
}
