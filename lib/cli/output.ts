/**
 * Terminal output: text written to standard output as it is produced (generated tokens), all of
 * it, without the line that console.log adds; small tables of aligned columns; and the checks that
 * an output file's folder is there and can be written, and that an output folder can be made and
 * written, before any work is done.
 * @module
 */
import { dirname, relative, resolve } from "node:path";
import { writeFailureReason } from "../io/atomic.ts";
import { ArgsError } from "./args.ts";

const encoder = new TextEncoder();

/** Write `text` to standard output now, whole. */
export function writeStdout(text: string): void {
  const bytes = encoder.encode(text);
  for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
}

/** Rows of cells as left-aligned columns under `header`, two spaces apart. */
export function textTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (r: readonly string[]) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd();
  return [header, ...rows].map(line).join("\n");
}

/**
 * Refuse an output file (`--flag path`) whose folder does not exist, is no folder, or takes no new
 * file (a read-only file system, no permission: tried with a temporary file), before the work
 * whose result it would hold.
 */
export async function checkOutputFolder(flag: string, path: string): Promise<void> {
  const folder = dirname(resolve(path));
  const stat = await Deno.stat(folder).catch((e) => e instanceof Deno.errors.NotFound ? null : undefined);
  const refuse = (why: string): never => {
    throw new ArgsError(
      `--${flag} ${path}: ${why}; ${stat?.isDirectory ? "write elsewhere" : "create it or write elsewhere"}`,
    );
  };
  if (!stat?.isDirectory) {
    refuse(`its folder ${dirname(path)} ${stat === null ? "does not exist" : "is not a folder"}`);
  }
  try {
    await Deno.remove(await Deno.makeTempFile({ dir: folder, prefix: ".hartley-check-" }));
  } catch (e) {
    refuse(`cannot write in its folder ${dirname(path)} (${writeFailureReason(e)})`);
  }
}

/** Options of {@link checkOutputDir}. */
export interface OutputDirOptions {
  /**
   * The folder is replaced as a whole (lib/io/atomic.ts's writeDirAtomic), its new self written
   * beside it: its parent must take a new entry even when it exists. Default: what is written
   * goes inside it.
   */
  whole?: boolean;
}

/**
 * Refuse an output folder (`--flag path`, made with its missing parents when written) that is a
 * file, lies under a file, or cannot be written where it would go, before the work whose results it
 * would hold: the nearest folder that exists (`path` itself, or with `whole` its parent) must take
 * a new entry (tried with a temporary folder).
 */
export async function checkOutputDir(flag: string, path: string, opts: OutputDirOptions = {}): Promise<void> {
  const refuse = (why: string) => {
    throw new ArgsError(`--${flag} ${path}: ${why}; give another folder`);
  };
  const full = resolve(path);
  for (let at = full;; at = dirname(at)) {
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(at);
    } catch (e) {
      // not there yet (or under a file, which the walk up finds): look one level up
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) continue;
      refuse(`cannot look at ${at} (${(e as Error).message})`);
      return;
    }
    if (!stat.isDirectory) refuse(at === full ? "it is a file, not a folder" : `${shown(at)} is a file`);
    // a folder replaced whole is written beside itself
    const takes = at === full && opts.whole ? dirname(at) : at;
    try {
      await Deno.remove(await Deno.makeTempDir({ dir: takes, prefix: ".hartley-check-" }));
    } catch (e) {
      refuse(`cannot create a folder in ${shown(takes)} (${writeFailureReason(e)})`);
    }
    return;
  }
}

/** `path` as a message shows it: relative to the working directory when it lies in it. */
function shown(path: string): string {
  const inside = relative(".", path);
  return inside === "" ? "." : inside.startsWith("..") ? path : inside;
}
