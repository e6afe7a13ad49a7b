/**
 * Path queries shared by the loaders, the trainer and the CLI.
 * @module
 */

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
