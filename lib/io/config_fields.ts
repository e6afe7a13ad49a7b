/**
 * Reading the fields of a Hugging Face JSON config: {@link Fields} gives typed access whose
 * errors ({@link HfConfigError}) name the file and the field.
 * @module
 */
import type { Activation } from "./hf_config.ts";

/** A config.json that is malformed, unsupported or missing a field. */
export class HfConfigError extends Error {
  /** Always "HfConfigError". */
  override name = "HfConfigError";
}

/** config.json's activation names (transformers' ACT2FN keys) → the activations this project runs. */
export const ACTIVATIONS: Record<string, Activation> = {
  gelu: "gelu",
  gelu_python: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  relu: "relu",
  silu: "silu",
  swish: "silu",
};

/** Typed access to config fields with errors naming the file and the field. */
export class Fields {
  constructor(readonly raw: Record<string, unknown>, readonly path: string) {}

  has(key: string): boolean {
    return this.raw[key] != null;
  }

  /** An integer ≥ min; absent or null takes `def`, and is an error without one. */
  int(key: string, def?: number, min = 1): number {
    const v = this.raw[key];
    if (v == null) {
      if (def === undefined) throw new HfConfigError(`${this.path}: missing required field "${key}"`);
      return def;
    }
    if (!Number.isSafeInteger(v) || (v as number) < min) {
      throw new HfConfigError(`${this.path}: "${key}" must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  }

  positive(key: string, def: number): number {
    const v = this.raw[key] ?? def;
    if (typeof v !== "number" || !(v > 0)) {
      throw new HfConfigError(`${this.path}: "${key}" must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.raw[key] ?? def;
    if (typeof v !== "boolean") {
      throw new HfConfigError(`${this.path}: "${key}" must be true or false, got ${v}`);
    }
    return v;
  }

  str(key: string, def: string): string {
    const v = this.raw[key] ?? def;
    if (typeof v !== "string") throw new HfConfigError(`${this.path}: "${key}" must be a string, got ${v}`);
    return v;
  }

  strings(key: string): string[] {
    const v = this.raw[key] ?? [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
      throw new HfConfigError(`${this.path}: "${key}" must be a list of strings, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  /** A token id field: null stays null, absent takes the family default. */
  tokenId(key: string, def: number | null): number | null {
    const v = this.raw[key];
    if (v === undefined) return def;
    return v === null ? null : this.checkId(key, v);
  }

  checkId(key: string, v: unknown): number {
    if (!Number.isSafeInteger(v) || (v as number) < 0) {
      throw new HfConfigError(
        `${this.path}: "${key}" must be a token id (integer ≥ 0), got ${JSON.stringify(v)}`,
      );
    }
    return v as number;
  }

  activation(key: string, def: string): Activation {
    const name = this.str(key, def);
    const act = ACTIVATIONS[name];
    if (!act) {
      throw new HfConfigError(
        `${this.path}: "${key}" ${JSON.stringify(name)} is not supported (supported: ${
          Object.keys(ACTIVATIONS).join(", ")
        })`,
      );
    }
    return act;
  }

  /** a / b, which must divide exactly (e.g. hidden size over heads). */
  divide(a: number, b: number, aKey: string, bKey: string): number {
    if (a % b !== 0) {
      throw new HfConfigError(`${this.path}: ${aKey} (${a}) is not a multiple of ${bKey} (${b})`);
    }
    return a / b;
  }
}
