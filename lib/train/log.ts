/**
 * The run log: one JSON object per line (JSONL), appended as the run goes — a `start` record
 * with the run's settings, a `train` record per logged step, an `eval` record per evaluation,
 * `checkpoint`, `resume` and `end` records. Every record has a `type` and the optimiser `step`
 * it belongs to, so a resumed run can drop what an interrupted one logged after its last
 * checkpoint and continue the same curve.
 * @module
 */
import { dirname } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";

/** One log line. */
export interface LogRecord {
  /** The kind of record: `start`, `train`, `eval`, `checkpoint`, `best`, `resume`, `end` or a custom one. */
  type: "start" | "train" | "eval" | "checkpoint" | "best" | "resume" | "end" | string;
  /** Optimiser steps done when the record was written. */
  step: number;
  /** The record's other fields (loss, settings, paths, …), as JSON values. */
  [field: string]: unknown;
}

/** An append-only JSONL log file. */
export class RunLog {
  #file: Deno.FsFile | null;
  readonly #encoder = new TextEncoder();

  private constructor(readonly path: string, file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * Open `path` for a new run (an existing file is replaced) or, with `resumeAt`, keep only
   * the records of steps ≤ resumeAt but the stop's `end` (rewritten atomically) and append after
   * them.
   */
  static async open(path: string, opts: { resumeAt?: number } = {}): Promise<RunLog> {
    await Deno.mkdir(dirname(path), { recursive: true });
    if (opts.resumeAt !== undefined) {
      const kept = (await readRunLog(path).catch((e) => {
        if (e instanceof Deno.errors.NotFound) return [];
        throw e;
      })).filter((r) => r.step <= opts.resumeAt! && r.type !== "end");
      await writeFileAtomic(path, kept.map((r) => JSON.stringify(r) + "\n").join(""));
    } else {
      await writeFileAtomic(path, "");
    }
    const file = await Deno.open(path, { append: true, create: true });
    return new RunLog(path, file);
  }

  /** Append one record (written before this resolves). */
  async write(record: LogRecord): Promise<void> {
    if (!this.#file) throw new Error(`${this.path}: the run log is closed`);
    const bytes = this.#encoder.encode(JSON.stringify(record, nonFinite) + "\n");
    let done = 0;
    while (done < bytes.length) done += await this.#file.write(bytes.subarray(done));
  }

  /** Close the file. */
  close(): void {
    this.#file?.close();
    this.#file = null;
  }
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
