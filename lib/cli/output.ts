/**
 * Terminal output: text written to standard output as it is produced (generated tokens), all of
 * it, without the line that console.log adds; small tables of aligned columns; and the checks that
 * an output file's folder is there, and that an output folder can be made, before any work is done.
 * @module
 */
import { dirname, relative, resolve } from "node:path";
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
 * Refuse an output file (`--flag path`) whose folder does not exist or is no folder, before the
 * work whose result it would hold.
 */
export async function checkOutputFolder(flag: string, path: string): Promise<void> {
  const folder = dirname(resolve(path));
  const stat = await Deno.stat(folder).catch((e) => e instanceof Deno.errors.NotFound ? null : undefined);
  if (stat?.isDirectory) return;
  throw new ArgsError(
    `--${flag} ${path}: its folder ${dirname(path)} ${stat === null ? "does not exist" : "is not a folder"}` +
      `; create it or write elsewhere`,
  );
}

/**
 * Refuse an output folder (`--flag path`, made with its missing parents when written) that is a
 * file, lies under a file, or cannot be created where it would go, before the work whose results it
 * would hold: the nearest folder that exists must take a new entry (tried with a temporary folder).
 */
export async function checkOutputDir(flag: string, path: string): Promise<void> {
  const refuse = (why: string) => {
    throw new ArgsError(`--${flag} ${path}: ${why}; give another folder`);
  };
  for (let at = resolve(path);; at = dirname(at)) {
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(at);
    } catch (e) {
      // not there yet (or under a file, which the walk up finds): look one level up
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) continue;
      refuse(`cannot look at ${at} (${(e as Error).message})`);
      return;
    }
    const inside = relative(".", at);
    const shown = inside === "" ? "." : inside.startsWith("..") ? at : inside;
    if (!stat.isDirectory) refuse(at === resolve(path) ? "it is a file, not a folder" : `${shown} is a file`);
    if (at === resolve(path)) return; // already there: what goes in it is checked where it is written
    try {
      await Deno.remove(await Deno.makeTempDir({ dir: at, prefix: ".hartley-check-" }));
    } catch (e) {
      refuse(`cannot create a folder in ${shown} (${(e as Error).message})`);
    }
    return;
  }
}
