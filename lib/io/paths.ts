/**
 * Path queries shared by the loaders, the trainer and the CLI.
 * @module
 */
import { isAbsolute, relative, resolve, sep } from "node:path";

/**
 * Whether `inner` is `outer` or lies inside it (both resolved from the working directory; links
 * not followed): replacing `outer` as a whole would take `inner` with it.
 */
export function isWithin(inner: string, outer: string): boolean {
  const rel = relative(resolve(outer), resolve(inner));
  return rel === "" || !(rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel));
}

/** Whether `path` exists (a missing path is false; any other error, e.g. no permission, throws). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
