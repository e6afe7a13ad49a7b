/**
 * Terminal output: text written to standard output as it is produced (generated tokens), all of
 * it, without the line that console.log adds; small tables of aligned columns; and the check that
 * an output file's folder is there before any work is done.
 * @module
 */
import { dirname, resolve } from "node:path";
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
