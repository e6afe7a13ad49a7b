/**
 * The few assertions the tests use (no jsr: imports are reachable here), plus numeric
 * comparisons against float64 references.
 * @module
 */
export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new AssertionError(`${msg ? msg + ": " : ""}expected ${e}, got ${a}`);
}

export function assertThrows(fn: () => unknown, match?: RegExp | string): Error {
  try {
    fn();
  } catch (e) {
    checkMatch(e as Error, match);
    return e as Error;
  }
  throw new AssertionError("expected an error, none was thrown");
}

export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  type?: new (...args: never[]) => E,
  match?: RegExp | string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    if (type && !(e instanceof type)) throw new AssertionError(`expected ${type.name}, got ${e}`);
    checkMatch(e as Error, match);
    return e as E;
  }
  throw new AssertionError("expected a rejection, none came");
}

function checkMatch(e: Error, match?: RegExp | string) {
  if (match === undefined) return;
  const ok = typeof match === "string" ? e.message.includes(match) : match.test(e.message);
  if (!ok) throw new AssertionError(`error message ${JSON.stringify(e.message)} does not match ${match}`);
}

/** Relative L2 error ‖a − b‖ / ‖b‖ (‖a‖ when b is zero). */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new AssertionError(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / (den > 0 ? Math.sqrt(den) : 1);
}

/** Assert rel-L2(actual, expected) ≤ tol. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, msg = "") {
  const e = relL2(actual, expected);
  if (!(e <= tol)) throw new AssertionError(`${msg} rel-L2 ${e.toExponential(3)} > ${tol}`);
}
