/**
 * Typed reads of an adapter_config.json's fields (lib/peft/config.ts parses it with them): each
 * checks a field's value and throws an {@link AdapterConfigError} that names the source, the
 * field, the value and what was expected.
 * @module
 */
import type { TargetModules } from "./config.ts";

/** An adapter_config.json (or options) that is malformed, unsupported or out of range. */
export class AdapterConfigError extends Error {
  /** Always "AdapterConfigError". */
  override name = "AdapterConfigError";
}

/** `v` as JSON for an error message, cut to 120 characters. */
export function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 120 ? s.slice(0, 117) + "..." : s;
}

/** Typed access to config fields; every error names the source and the field. */
export class Fields {
  constructor(readonly raw: Record<string, unknown>, readonly source: string) {}

  fail(key: string, expected: string): never {
    throw new AdapterConfigError(`${this.source}: "${key}" must be ${expected}, got ${show(this.raw[key])}`);
  }

  int(key: string, def: number, min: number): number {
    const v = this.raw[key] ?? def;
    if (!Number.isSafeInteger(v) || (v as number) < min) {
      this.fail(key, min === 0 ? "an integer ≥ 0 (below 2^53)" : `an integer ≥ ${min}`);
    }
    return v as number;
  }

  finite(key: string, def: number): number {
    const v = this.raw[key] ?? def;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, "a finite number");
    return v;
  }

  ratio(key: string, def: number): number {
    const v = this.raw[key] ?? def;
    if (typeof v !== "number" || !(v >= 0 && v <= 1)) this.fail(key, "a number in [0, 1]");
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.raw[key] ?? def;
    if (typeof v !== "boolean") this.fail(key, "true or false");
    return v;
  }

  oneOf<T extends string>(key: string, def: T, allowed: readonly T[]): T {
    const v = this.raw[key] ?? def;
    if (!allowed.includes(v as T)) this.fail(key, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
    return v as T;
  }

  optString(key: string): string | null {
    const v = this.raw[key] ?? null;
    if (v !== null && typeof v !== "string") this.fail(key, "a string or null");
    return v;
  }

  /** A list of non-empty names, or null. */
  names(key: string): string[] | null {
    const v = this.raw[key] ?? null;
    if (v === null) return null;
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string" && s !== "")) {
      this.fail(key, "a list of module names or null");
    }
    return [...v];
  }

  /**
   * Target modules: null, a list of names, or a regular expression (checked to compile). An
   * empty list is an error, or null with `emptyIsNull`.
   */
  targets(key: string, opts: { emptyIsNull?: boolean } = {}): TargetModules | null {
    const v = this.raw[key] ?? null;
    if (v === null) return null;
    if (typeof v === "string") {
      if (v === "") this.fail(key, "a list of module names, a regular expression, or null");
      try {
        new RegExp(v);
      } catch (e) {
        throw new AdapterConfigError(
          `${this.source}: "${key}" ${show(v)} is not a valid regular expression (${(e as Error).message})`,
        );
      }
      return v;
    }
    const list = this.names(key)!;
    if (list.length > 0) return list;
    if (opts.emptyIsNull) return null;
    this.fail(key, "a non-empty list of module names, a regular expression, or null");
  }

  layers(): number[] | null {
    const key = "layers_to_transform";
    const v = this.raw[key] ?? null;
    if (v === null) return null;
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      this.fail(key, "a layer index or a list of layer indices (integers ≥ 0), or null");
    }
    return list.length === 0 ? null : list as number[];
  }

  layersPattern(): string[] | null {
    const key = "layers_pattern";
    const v = this.raw[key] ?? null;
    if (v === null) return null;
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === "string")) this.fail(key, "a name, a list of names, or null");
    const names = (list as string[]).filter((s) => s !== "");
    return names.length === 0 ? null : names;
  }

  bias(): "none" {
    const v = this.raw.bias ?? "none";
    if (v !== "none") {
      throw new AdapterConfigError(
        `${this.source}: "bias" ${show(v)} is not supported (only "none": bias terms are not trained)`,
      );
    }
    return "none";
  }

  /** Each of `keys` must be absent or empty (null, false, [], {}). */
  unsupported(keys: string[], method: string): void {
    for (const key of keys) {
      const v = this.raw[key];
      const empty = v == null || v === false || (Array.isArray(v) && v.length === 0) ||
        (typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0);
      if (!empty) {
        throw new AdapterConfigError(
          `${this.source}: ${method} option "${key}" = ${show(v)} is not supported (it must be unset)`,
        );
      }
    }
  }

  /** The fields not in `known`, kept as read. */
  extra(known: string[]): Record<string, unknown> {
    return Object.fromEntries(Object.entries(this.raw).filter(([k]) => !known.includes(k)));
  }
}
