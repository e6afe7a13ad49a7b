/**
 * Path queries shared by the loaders, the trainer and the CLI.
 * @module
 */
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";

/**
 * Whether `inner` is `outer` or lies inside it, both with their links followed (as far as they
 * exist): replacing `outer` as a whole would take `inner` with it.
 */
export function isWithin(inner: string, outer: string): boolean {
  const rel = relative(realPath(outer), realPath(inner));
  return rel === "" || !(rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel));
}

/** `path` absolute with every link followed; the part that does not exist yet appended as is. */
function realPath(path: string): string {
  const full = resolve(path);
  try {
    return Deno.realPathSync(full);
  } catch (e) {
    // a file on the way (`file/x`) is a path that does not exist as well
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
    const parent = dirname(full);
    return parent === full ? full : join(realPath(parent), basename(full));
  }
}

/** Whether `path` exists (a missing path is false; any other error, e.g. no permission, throws). */
export async function pathExists(path: string): Promise<boolean> {
  return (await statOrNull(path)) !== null;
}

/** What is at `path`, or null where nothing is (any other error, e.g. no permission, throws). */
export async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * The file that flag `--${flag}` names: `path` itself, or the `name` in it when it is a folder. A path
 * that is not there is an Error (`--${flag} PATH: file not found`: exit 1, as any file that cannot be
 * read); a folder without `name` throws what `folderWithout` makes (each command says what to give).
 */
export async function fileInFolder(
  path: string,
  name: string,
  flag: string,
  folderWithout: () => Error,
): Promise<string> {
  const stat = await statOrNull(path);
  if (!stat) throw new Error(`--${flag} ${path}: file not found`);
  if (!stat.isDirectory) return path;
  if ((await statOrNull(join(path, name)))?.isFile) return join(path, name);
  throw folderWithout();
}

/**
 * What opening or reading `path` failed with (`e`, what was thrown), in words that name it: not
 * found, a folder where a file was expected, or the system's message.
 */
export function readFailure(path: string, e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return `${path}: file not found`;
  if (e instanceof Deno.errors.IsADirectory) return `${path}: is a directory, not a data file`;
  return `${path}: cannot read: ${(e as Error).message}`;
}

/** The bytes of the file at `path`; a read that fails throws `error` of its {@link readFailure}. */
export async function readFileBytes(path: string, error: (message: string) => Error): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw error(readFailure(path, e));
  }
}
