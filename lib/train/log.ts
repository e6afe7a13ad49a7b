/**
 * The run log: one JSON object per line (JSONL), appended as the run goes — a `start` record
 * with the run's settings, a `train` record per logged step, an `eval` record per evaluation,
 * `checkpoint`, `resume` and `end` records. Every record has a `type` and the optimiser `step`
 * it belongs to, so a resumed run can drop what an interrupted one logged after its last
 * checkpoint and continue the same curve.
 * @module
 */
import { dirname } from "node:path";
import { asWriteError, writeAll, writeFileAtomic } from "../io/atomic.ts";

/** One log line. */
export interface LogRecord {
  /** The kind of record: `start`, `train`, `eval`, `checkpoint`, `best`, `resume`, `end` or a custom one. */
  type: "start" | "train" | "eval" | "checkpoint" | "best" | "resume" | "end" | string;
  /** Optimiser steps done when the record was written. */
  step: number;
  /** The record's other fields (loss, settings, paths, …), as JSON values. */
  [field: string]: unknown;
}

/**
 * An append-only JSONL log file. A record the file system refuses (a full disk) is a
 * WriteError (lib/io/atomic.ts) naming the file, which then holds whole records alone.
 */
export class RunLog {
  #file: Deno.FsFile | null;
  /** Bytes of the whole records in the file. */
  #size: number;
  readonly #encoder = new TextEncoder();
  /** The last write asked for, settled: the next waits for it. */
  #writing: Promise<void> = Promise.resolve();

  private constructor(
    readonly path: string,
    file: Deno.FsFile,
    size: number,
    readonly onWarning?: (message: string) => void,
  ) {
    this.#file = file;
    this.#size = size;
  }

  /**
   * Open `path` for a new run (an existing file is replaced) or, with `resumeAt`, keep only
   * the records of steps ≤ resumeAt but the stop's `end` (rewritten atomically) and append after
   * them.
   */
  static async open(path: string, opts: RunLogOptions = {}): Promise<RunLog> {
    const named = (e: unknown) => {
      throw asWriteError(path, e);
    };
    await Deno.mkdir(dirname(path), { recursive: true }).catch(named);
    let text = "";
    if (opts.resumeAt !== undefined) {
      const kept = (await readRunLog(path).catch((e) => {
        if (e instanceof Deno.errors.NotFound) return [];
        throw e;
      })).filter((r) => r.step <= opts.resumeAt! && r.type !== "end");
      text = kept.map((r) => JSON.stringify(r) + "\n").join("");
    }
    const bytes = new TextEncoder().encode(text);
    await writeFileAtomic(path, bytes);
    return new RunLog(path, await openAppend(path), bytes.length, opts.onWarning);
  }

  /**
   * Append one record (written before this resolves). Writes not awaited one by one are written
   * in the order they were asked for, one at a time.
   */
  write(record: LogRecord): Promise<void> {
    const written = this.#writing.then(() => this.#append(record));
    this.#writing = written.catch(() => {});
    return written;
  }

  async #append(record: LogRecord): Promise<void> {
    if (!this.#file) throw new Error(`${this.path}: the run log is closed`);
    await this.#keepInPlace();
    const bytes = this.#encoder.encode(JSON.stringify(record, nonFinite) + "\n");
    try {
      await writeAll(this.#file, bytes);
    } catch (e) {
      // no half record for a reader to trip over
      await this.#file.truncate(this.#size).catch(() => {});
      throw asWriteError(this.path, e);
    }
    this.#size += bytes.length;
  }

  /**
   * Where the file at the log's path is no longer the one being appended to (the run's folder was
   * deleted or moved while it ran, and checkpoints would make it again), write the records so far
   * there again, from the open file, and append to that: a log is not lost without a word.
   */
  async #keepInPlace(): Promise<void> {
    const file = this.#file!;
    const [there, ours] = await Promise.all([Deno.stat(this.path).catch(() => null), file.stat()]);
    if (there && (there.ino === null || (there.ino === ours.ino && there.dev === ours.dev))) return;
    const records = new Uint8Array(this.#size);
    await file.seek(0, Deno.SeekMode.Start);
    for (let at = 0; at < records.length;) {
      const n = await file.read(records.subarray(at));
      if (n === null) break;
      at += n;
    }
    await Deno.mkdir(dirname(this.path), { recursive: true }).catch((e) => {
      throw asWriteError(this.path, e);
    });
    await writeFileAtomic(this.path, records);
    this.#file = await openAppend(this.path);
    file.close();
    this.onWarning?.(
      `${this.path} was ${
        there ? "replaced" : "removed"
      } while the run wrote it; its records so far are written there again`,
    );
  }

  /** Close the file. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/** Options of {@link RunLog.open}. */
export interface RunLogOptions {
  /** Keep the records of steps up to this one (a resumed run's), but the stop's `end`; default none. */
  resumeAt?: number;
  /** Told where the log's file was removed or replaced during the run and is written again. */
  onWarning?: (message: string) => void;
}

/** `path` opened to append to, and to read back (see RunLog's #keepInPlace). */
async function openAppend(path: string): Promise<Deno.FsFile> {
  return await Deno.open(path, { append: true, read: true, create: true }).catch((e) => {
    throw asWriteError(path, e);
  });
}

/**
 * A JSON.stringify replacer writing non-finite numbers as strings ("NaN", "Infinity"), which JSON
 * cannot hold (the run log's records, `eval --json`).
 */
export function nonFinite(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isFinite(value) ? String(value) : value;
}

/**
 * The records of a run log. A malformed line is an error naming the line, except a
 * truncated last line (a run killed mid-write), which is skipped.
 */
export async function readRunLog(path: string): Promise<LogRecord[]> {
  const lines = (await Deno.readTextFile(path)).split("\n");
  const out: LogRecord[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      if (i === lines.length - 1) return; // no newline yet: the write was cut short
      throw new Error(`${path}:${i + 1}: not a JSON record (${(e as Error).message})`);
    }
    if (typeof rec !== "object" || rec === null || typeof (rec as LogRecord).type !== "string") {
      throw new Error(`${path}:${i + 1}: a log record must be an object with a "type"`);
    }
    const r = rec as LogRecord;
    if (typeof r.step !== "number") r.step = 0;
    out.push(r);
  });
  return out;
}
