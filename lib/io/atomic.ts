/**
 * Atomic file writes: the content goes to a temporary file in the target's directory, is
 * flushed to disk, then renamed over the target. Readers see the old file or the whole new
 * one, never a partial write; a failed write leaves the target untouched and removes the
 * temporary file.
 * @module
 */
import { basename, dirname, join } from "node:path";

/**
 * Run `write` on a fresh temporary file beside `path`, then rename it to `path`.
 * The file handle is closed by this function; `write` must not close it.
 */
export async function withAtomicFile(
  path: string,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`);
  const file = await Deno.open(tmp, { write: true, createNew: true });
  try {
    try {
      await write(file);
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Write `data` (bytes, or text as UTF-8) to `path` atomically. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await withAtomicFile(path, (file) => writeAll(file, bytes));
}

/** Write every byte of `bytes` to `file` (Deno's `write` may write fewer). */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}
