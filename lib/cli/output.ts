/**
 * Terminal output: text written to standard output as it is produced (generated tokens), all of
 * it, without the line that console.log adds; and small tables of aligned columns.
 * @module
 */

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
