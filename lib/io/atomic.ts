/**
 * Atomic file writes: the content goes to a temporary file in the target's directory, is
 * flushed to disk, then renamed over the target. Readers see the old file or the whole new
 * one, never a partial write; a failed write leaves the target untouched and removes the
 * temporary file. A write the file system refuses (a full disk, a read-only file system, no
 * permission) is a {@link WriteError} naming the target, never the temporary file.
 * @module
 */
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { isWithin, pathExists, statOrNull } from "./paths.ts";

/**
 * A file or folder the file system would not let be written (the disk is full, it is
 * read-only, permission is denied): names the path a reader would look for and why, in words.
 */
export class WriteError extends Error {
  override name = "WriteError";
  /** `reason` already says which checkpoint of the run is kept to resume from, or that none is. */
  readonly checkpointTold: boolean;
  constructor(readonly path: string, readonly reason: string, options?: WriteErrorOptions) {
    super(`cannot write ${path}: ${reason}`, options);
    this.checkpointTold = options?.checkpointTold ?? false;
  }
}

/** Options of a {@link WriteError}. */
export interface WriteErrorOptions extends ErrorOptions {
  /** See {@link WriteError.checkpointTold}. */
  checkpointTold?: boolean;
}

/** The failures only a write meets, in words, by the code Deno gives them. */
const WRITE_FAILURES: Record<string, string> = {
  ENOSPC: "the disk is full",
  EDQUOT: "the disk quota is used up",
  EFBIG: "the file is over the largest size the file system takes",
  EROFS: "the file system is read-only",
};

/** Why a file-system call failed, in words (the system's own message where it has none here). */
export function writeFailureReason(e: unknown): string {
  const code = writeOnlyCode(e);
  if (code) return WRITE_FAILURES[code];
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.NotFound) return "its folder does not exist";
  if (e instanceof Deno.errors.NotADirectory) return "part of its path is a file, not a folder";
  return e instanceof Error ? e.message : String(e);
}

/** `e`, an error of writing `path` (or of a call made to write it), as a {@link WriteError}. */
export function asWriteError(path: string, e: unknown): WriteError {
  return e instanceof WriteError ? e : new WriteError(path, writeFailureReason(e), { cause: e });
}

/** The code of `e` when it is a failure only a write meets (a full disk, a read-only file system), else null. */
function writeOnlyCode(e: unknown): string | null {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && code in WRITE_FAILURES ? code : null;
}

/**
 * Errors {@link writeAll} met writing bytes, which {@link withAtomicFile} names the file of; an
 * error of its `write` that is not one (reading a source, checking a value) passes unchanged.
 */
const failedWrites = new WeakSet<object>();

/**
 * Run `write` on a fresh temporary file beside `path`, then rename it to `path`.
 * The file handle is closed by this function; `write` must not close it.
 */
export async function withAtomicFile(
  path: string,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`);
  const named = (e: unknown) => {
    throw asWriteError(path, e);
  };
  const file = await Deno.open(tmp, { write: true, createNew: true }).catch(named);
  try {
    try {
      await write(file);
      await file.sync().catch(named);
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path).catch(named);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw failedWrites.has(e as object) || writeOnlyCode(e) ? asWriteError(path, e) : e;
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
  try {
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
  } catch (e) {
    if (typeof e === "object" && e !== null) failedWrites.add(e);
    throw e;
  }
}

/** Options of {@link writeDirAtomic}. */
export interface WriteDirOptions {
  /**
   * Entries of an existing `dir` to carry over into the new one (e.g. a README beside an
   * adapter); everything else of the old directory is dropped. None by default.
   */
  keep?: (name: string) => boolean;
}

/**
 * Write a directory as a whole: `fill` writes into a fresh folder beside `dir`, which is then
 * renamed into place. An existing `dir` is moved aside first and removed after (entries that
 * `keep` accepts are moved into the new folder). A `dir` that is a link to a folder stays a link:
 * the folder it names is the one replaced. A failure in `fill` leaves `dir` untouched;
 * a crash between the two renames leaves the old directory beside the target as
 * `.<name>.<id>.old`, never half a directory; the next successful write removes such leftovers.
 */
export async function writeDirAtomic(
  dir: string,
  fill: (tmp: string) => Promise<void>,
  opts: WriteDirOptions = {},
): Promise<void> {
  if (isWithin(Deno.cwd(), dir)) {
    throw new Error(
      `${dir}: replacing it as a whole would remove the working directory, which lies within it`,
    );
  }
  // renaming a link would move the link itself, leaving the folder it names as it was
  const named = (e: unknown) => {
    throw asWriteError(dir, e);
  };
  const target = await realPathIfExists(dir).catch(named);
  const parent = dirname(target), name = basename(target);
  const made = await missingFolders(parent).catch(named);
  const id = crypto.randomUUID().slice(0, 8);
  const tmp = join(parent, `.${name}.${id}.tmp`);
  let old: string | null = null;
  try {
    await Deno.mkdir(parent, { recursive: true }).catch(named);
    await Deno.mkdir(tmp).catch(named);
    await fill(tmp).catch((e) => {
      throw namingTarget(e, tmp, dir);
    });
    const stat = await statOrNull(target);
    if (stat && !stat.isDirectory) throw new Error(`${dir} exists and is not a directory`);
    if (stat) {
      old = join(parent, `.${name}.${id}.old`);
      await Deno.rename(target, old).catch(named);
    }
    try {
      await Deno.rename(tmp, target).catch(named);
    } catch (e) {
      if (old) await Deno.rename(old, target);
      old = null;
      throw e;
    }
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    // the folders made for it, innermost first, where still empty: a failed write leaves nothing
    for (const folder of made) await Deno.remove(folder).catch(() => {});
    throw e;
  }
  if (old) {
    if (opts.keep) {
      for await (const entry of Deno.readDir(old)) {
        // the new folder's own files win over the old ones of the same name
        if (opts.keep(entry.name) && !(await pathExists(join(target, entry.name)))) {
          await Deno.rename(join(old, entry.name), join(target, entry.name));
        }
      }
    }
    await Deno.remove(old, { recursive: true });
  }
  await removeLeftovers(parent, name);
}

/**
 * An error of filling `tmp`, the folder that becomes `dir`: a {@link WriteError} of a file in it
 * names that file in `dir`; a failure only a write meets (a full disk) with no file named (a
 * copy) names `dir`; any other error is unchanged.
 */
function namingTarget(e: unknown, tmp: string, dir: string): unknown {
  if (e instanceof WriteError) {
    const rel = relative(tmp, e.path);
    if (rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return e;
    return new WriteError(join(dir, rel), e.reason, { cause: e.cause });
  }
  return writeOnlyCode(e) ? asWriteError(dir, e) : e;
}

/**
 * The folders of absolute `path` and above it that do not exist, innermost first (a link counts as
 * there, though what it names is not: it is no folder a write made).
 */
async function missingFolders(path: string): Promise<string[]> {
  const there = (at: string) =>
    Deno.lstat(at).then(() => true, (e) => e instanceof Deno.errors.NotFound ? false : Promise.reject(e));
  const missing: string[] = [];
  for (let at = path; !(await there(at)); at = dirname(at)) {
    missing.push(at);
    if (dirname(at) === at) break;
  }
  return missing;
}

/** `path` absolute, with its links followed when it exists. */
async function realPathIfExists(path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return resolve(path);
    throw e;
  }
}

/**
 * The names of what an interrupted atomic write of one of `names` leaves beside it:
 * `.<name>.<id>.old` (the target set aside) or `.<name>.<id>.tmp` (the new one being written).
 */
export function leftoverPattern(names: readonly string[]): RegExp {
  const escaped = names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  return new RegExp(`^\\.(${escaped})\\.[0-9a-f]{8}\\.(old|tmp)$`);
}

/** What an earlier crash between the two renames of {@link writeDirAtomic} left beside `name`. */
async function removeLeftovers(parent: string, name: string): Promise<void> {
  const left = leftoverPattern([name]);
  for await (const e of Deno.readDir(parent)) {
    if (e.isDirectory && left.test(e.name)) await Deno.remove(join(parent, e.name), { recursive: true });
  }
}
