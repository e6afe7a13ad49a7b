/**
 * Writing text to standard output as it is produced (generated tokens), all of it, without the
 * line that console.log adds.
 * @module
 */

const encoder = new TextEncoder();

/** Write `text` to standard output now, whole. */
export function writeStdout(text: string): void {
  const bytes = encoder.encode(text);
  for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
}
