/**
 * Environment variables the command line reads. `HARTLEY_MAX_BINDING` (bytes, or with KiB, MiB or
 * GiB) makes hartley plan for storage bindings no larger than that, as on a device whose bindings
 * stop there (lavapipe and many laptop and mobile GPUs: 128 MiB), so a run can be checked to fit
 * one before it goes there (lib/gpu/bands.ts).
 * @module
 */
import { BINDING_LIMIT } from "../gpu/bands.ts";
import { ArgsError } from "./args.ts";

/** The variable that lowers the storage-binding limit. */
export const MAX_BINDING_ENV = "HARTLEY_MAX_BINDING";

const UNITS: Record<string, number> = { "": 1, B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30 };

/** A byte count such as `134217728`, `128MiB` or `64 KiB`; an {@link ArgsError} naming `what` otherwise. */
export function parseBytes(text: string, what: string): number {
  const m = /^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$/.exec(text);
  const bytes = m ? Number(m[1]) * UNITS[m[2] ?? ""] : NaN;
  if (!(Number.isSafeInteger(bytes) && bytes >= 1024)) {
    throw new ArgsError(
      `${what}: expected a byte count of at least 1024 such as 134217728 or 128MiB, got "${text}"`,
    );
  }
  return bytes;
}

/**
 * Apply the environment (`env`, by default the process's) to this process's GPU planning (the
 * binding limit); returns a function that puts back what was there before.
 */
export function applyEnvironment(
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): () => void {
  const before = BINDING_LIMIT.bytes;
  const text = env(MAX_BINDING_ENV);
  BINDING_LIMIT.bytes = text === undefined || text === "" ? 0 : parseBytes(text, MAX_BINDING_ENV);
  return () => void (BINDING_LIMIT.bytes = before);
}
