/**
 * Tensor lifetimes by scope: {@link tidy} frees every tensor created while its function runs,
 * except the ones it returns and the ones marked with {@link keep}.
 * @module
 */

/** What a scope needs of a tensor. */
export interface Scoped {
  /** Excluded from every scope's cleanup when true. */
  kept: boolean;
  /** Give the tensor's storage back. */
  dispose(): void;
}

const scopes: Set<Scoped>[] = [];

/** Register a newly created tensor with the innermost open scope (if any). */
export function track(t: Scoped): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Exclude `t` from scope cleanup (parameters, optimiser state, kept results); returns `t`. */
export function keep<T extends Scoped>(t: T): T {
  t.kept = true;
  return t;
}

/**
 * Run `fn` (synchronously) and dispose every tensor it created, except those in its result
 * (a tensor, or arrays/plain objects of them, searched two levels deep) and kept ones.
 * Returned tensors move to the enclosing scope. On a throw, everything created is disposed.
 *
 * ```ts
 * import type { Batch, Model } from "../models/model.ts";
 * declare const model: Model, batch: Batch;
 * const loss = tidy(() => model.forward(batch).loss!); // intermediates freed
 * ```
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Scoped>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) if (!t.kept) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new Error("tidy: the function must be synchronous (it returned a Promise)");
  }
  const survivors = new Set<Scoped>();
  collect(result, survivors, 2);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (survivors.has(t)) parent?.add(t);
    else if (!t.kept) t.dispose();
  }
  return result;
}

function collect(v: unknown, out: Set<Scoped>, depth: number): void {
  if (v === null || typeof v !== "object") return;
  if (isScoped(v)) {
    out.add(v);
    return;
  }
  if (depth === 0) return;
  const values = Array.isArray(v) ? v : Object.getPrototypeOf(v) === Object.prototype ? Object.values(v) : [];
  for (const x of values) collect(x, out, depth - 1);
}

function isScoped(v: object): v is Scoped {
  return "kept" in v && typeof (v as Scoped).dispose === "function";
}
