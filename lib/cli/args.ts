/**
 * Flag parsing shared by the commands: each command declares its flags once (type, default,
 * allowed values, range, help line) and gets typed values and a `--help` text from that one
 * table. Parsing uses `node:util`'s parseArgs in strict mode, so an unknown flag or a missing
 * value is an error; numbers, integers, choices and ranges are checked here with messages
 * that name the flag, the value and what was expected.
 * @module
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { WEIGHT_DTYPES } from "../nn/load.ts";
import { Progress } from "../train/progress.ts";
import { explainDeviceError } from "./errors.ts";

/** A flag's value type: text, a finite number, an integer, an on/off switch. */
export type FlagType = "string" | "number" | "integer" | "boolean";

/** One flag of a command. */
export interface FlagSpec {
  type: FlagType;
  /** One line for `--help`. */
  help: string;
  /** Value when the flag is absent (booleans default to false). */
  default?: string | number | boolean;
  /** The allowed values of a string flag. */
  choices?: readonly string[];
  /** Smallest allowed value of a number (inclusive). */
  min?: number;
  /** Largest allowed value of a number (inclusive). */
  max?: number;
  /** A bound a number must be above (exclusive): a rate or a scale of 0 would do nothing. */
  above?: number;
  /** Name of the value in `--help`, e.g. DIR (default from the type). */
  arg?: string;
  /** One-letter alias. */
  short?: string;
}

/** A command's flag table. */
export type FlagTable = Readonly<Record<string, FlagSpec>>;

type ValueOf<F extends FlagSpec> = F["type"] extends "boolean" ? boolean
  : F["type"] extends "string" ? string
  : number;

/** Parsed values: a flag with a default (or a boolean) is always set, others may be undefined. */
export type FlagValues<T extends FlagTable> = {
  [K in keyof T]: T[K] extends { default: unknown } ? ValueOf<T[K]>
    : T[K]["type"] extends "boolean" ? boolean
    : ValueOf<T[K]> | undefined;
};

/** The largest `--seed`: data order, dropout and sampling draw from 32-bit seeds (numpy's limit too). */
export const SEED_MAX = 2 ** 32 - 1;

/** `--dtype`, shared by the commands that load a model: how its frozen weights are stored. */
export const DTYPE_FLAG = {
  type: "string",
  choices: WEIGHT_DTYPES,
  default: "f32",
  help:
    "storage of the frozen weights: f32, f16, or the blocks' linear layers quantized to 8 or 4 bits (q8, q4; " +
    "the embedding tables and LM output layer then q8)",
} as const satisfies FlagSpec;

/** `--attention`, shared by the commands that run a model: the attention path (`ATTENTION_PATH`). */
export const ATTENTION_FLAG = {
  type: "string",
  choices: ["auto", "fused", "materialized"],
  default: "auto",
  help: "attention path: fused never stores the [batch, heads, T, T] probabilities (long sequences); " +
    "auto fuses when they would pass 256 MiB",
} as const satisfies FlagSpec;

/** `--text-field`, `--pair-field` and `--label-field`, shared by the commands that read labelled text. */
export const FIELD_FLAGS = {
  "text-field": {
    type: "string",
    help: "field holding the text (default: text, sentence, ...; tokens or words for token classification)",
  },
  "pair-field": {
    type: "string",
    help: "field holding a pair task's second text, with --text-field (default: found with the first)",
  },
  "label-field": {
    type: "string",
    help:
      "field holding the label (default: label; ner_tags, tags, labels or pos_tags for token classification; " +
      "for a Parquet or Arrow image split, label, else its one ClassLabel column, else labels)",
  },
} as const satisfies Record<string, FlagSpec>;

/** The root of the code the CLI runs from: a checkout, or the package (JSR, https). */
const CODE_ROOT = new URL("../../", import.meta.url);

/**
 * A file the package ships (`path` from its root) as a flag's default, found wherever the CLI runs
 * from: the copy beside the code, written as `path` when the working directory is the root (as
 * messages and recorded runs show it), else as an absolute path. Run from a remote URL, it is that
 * URL, which the commands cannot read ({@link checkShipped}).
 */
export function shippedPath(path: string): string {
  const url = new URL(path, CODE_ROOT);
  if (url.protocol !== "file:") return url.href;
  const file = fileURLToPath(url);
  return resolve(path) === file ? path : file;
}

/**
 * Refuse the value of `--${flag}` (a path, `arg` in `--help`) when it is a {@link shippedPath}
 * default that lies at a remote URL: the commands read their files from disk.
 */
export function checkShipped(flag: string, value: string, arg: string): void {
  if (CODE_ROOT.protocol === "file:" || !value.startsWith(CODE_ROOT.href)) return;
  throw new ArgsError(
    `--${flag} is needed: its default, ${value.slice(CODE_ROOT.href.length)}, ships with hartley but ` +
      `cannot be read where hartley runs from a remote URL (${CODE_ROOT.href}); give --${flag} ${arg}`,
  );
}

/** Where the embedded default model lives: every command's `--model` default. */
export const DEFAULT_MODEL = shippedPath("models/default");

/** The model and adapter flags of eval, predict and chat. */
export const MODEL_FLAGS = {
  model: {
    type: "string",
    default: DEFAULT_MODEL,
    arg: "DIR",
    help: "Hugging Face model directory (left out, with --adapter: the adapter's base)",
  },
  adapter: { type: "string", arg: "DIR", help: "adapter directory to apply (PEFT layout)" },
} as const satisfies Record<string, FlagSpec>;

/**
 * Refuse the sampling values generation cannot use (the flag table's bounds let 0 through),
 * before anything is loaded.
 */
export function checkSampling(v: { "top-p"?: number; "repetition-penalty"?: number }): void {
  if (v["top-p"] === 0) throw new ArgsError(`--top-p 0 is out of range: it must be in (0, 1]`);
  if (v["repetition-penalty"] === 0) {
    throw new ArgsError(`--repetition-penalty 0 is out of range: it must be above 0`);
  }
}

/** Variables for the chat template (predict, chat, and train and eval on conversations). */
export const TEMPLATE_KWARGS_FLAG = {
  type: "string",
  arg: "JSON",
  help: "variables the chat template reads, as transformers' apply_chat_template(**kwargs), " +
    `e.g. '{"enable_thinking": false}' (Qwen3 without its thinking)`,
} as const satisfies FlagSpec;

/** How predict and chat generate text. */
export const GENERATION_FLAGS = {
  "max-new-tokens": { type: "integer", default: 32, min: 0, help: "tokens to generate at most" },
  // the sampling flags default to generation_config.json's settings (`samplingOf` in generation.ts)
  temperature: {
    type: "number",
    min: 0,
    help: "sampling temperature, 0 for greedy [default: generation_config.json's when it samples, else 0]",
  },
  "top-k": {
    type: "integer",
    min: 0,
    help: "sample among the k most probable tokens, 0 for all [default: generation_config.json's, else 50 " +
      "as transformers]",
  },
  "top-p": {
    type: "number",
    min: 0,
    max: 1,
    help: "sample among the most probable tokens that hold this share of the probability " +
      "[default: generation_config.json's, else 1: all]",
  },
  "min-p": {
    type: "number",
    min: 0,
    max: 1,
    help: "sample among the tokens at least this many times as probable as the most probable one " +
      "[default: generation_config.json's, else 0: all]",
  },
  "repetition-penalty": {
    type: "number",
    min: 0,
    help: "divide the positive logits of tokens already in the text by this, multiply the negative ones " +
      "[default: generation_config.json's, else 1: none]",
  },
  seed: { type: "integer", default: 0, min: 0, max: SEED_MAX, help: "seed of the sampling" },
  "kv-cache": {
    type: "string",
    choices: ["auto", "f32", "f16"],
    default: "auto",
    help: "storage of the key/value cache; auto: f16 when --dtype is not f32 and the device has shader-f16",
  },
  stop: {
    type: "string",
    arg: "TEXT",
    help: "end the text where it reaches TEXT, left out (\\n and \\t stand for a newline and a tab)",
  },
  "template-kwargs": TEMPLATE_KWARGS_FLAG,
} as const satisfies Record<string, FlagSpec>;

/** `--stop`'s text: `\n` and `\t` as a newline and a tab, `\\` as a backslash. */
export function stopTexts(flag: string | undefined): string[] {
  if (flag === undefined || flag === "") return [];
  return [flag.replace(/\\(n|t|\\)/g, (_, c) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\"))];
}

/** `--template-kwargs`: a JSON object (empty when not given); anything else is an ArgsError. */
export function templateKwargs(flag: string | undefined): Record<string, unknown> {
  if (flag === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(flag);
  } catch (e) {
    throw new ArgsError(`--template-kwargs: not JSON (${(e as Error).message}): ${flag}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ArgsError(`--template-kwargs: expected a JSON object of variables, got ${flag}`);
  }
  return value as Record<string, unknown>;
}

/** `--loss-on`, shared by train and eval: which tokens of instruction data count. */
export const LOSS_ON_FLAG = {
  type: "string",
  choices: ["completion", "all"],
  default: "completion",
  help:
    "prompt/completion or conversation data: the loss on the completions (assistant turns) alone, or on every token",
} as const satisfies FlagSpec;

/** `--gradient-checkpointing`, shared by the commands that train. */
export const CHECKPOINTING_FLAG = {
  type: "boolean",
  help: "recompute each layer in backward instead of keeping its activations: less memory, one more forward",
} as const satisfies FlagSpec;

/** A command line that does not fit the command's flags; the CLI exits with status 2. */
export class ArgsError extends Error {
  override name = "ArgsError";
}

/** A command's description for parsing and `--help`. */
export interface CommandSpec<T extends FlagTable> {
  /** e.g. `train`. */
  name: string;
  /** One line under the usage. */
  summary: string;
  /** Usage after `cli.ts <name>`, e.g. `[options]` or `MODEL_DIR [options]`. */
  usage?: string;
  /** Paragraphs after the options (examples, notes). */
  notes?: string;
  flags: T;
  /** Positional arguments allowed (default 0). */
  positionals?: number;
  /**
   * The flags device-error advice may name (default: `flags`'): a command run through another's
   * parser (pretrain through train's) names its own.
   */
  adviceFlags?: readonly string[];
}

/** The outcome of {@link parseCommand}: help requested, or values. */
export type Parsed<T extends FlagTable> =
  | { help: true }
  | { help: false; values: FlagValues<T>; positionals: string[]; given: Set<string> };

/**
 * Parse `argv` (the arguments after the command name) against `spec`.
 * @throws ArgsError naming the flag and what was wrong.
 */
export function parseCommand<T extends FlagTable>(spec: CommandSpec<T>, argv: string[]): Parsed<T> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, f] of Object.entries(spec.flags)) {
    options[name] = { type: f.type === "boolean" ? "boolean" : "string" };
    if (f.short) options[name].short = f.short;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ArgsError(cleanParseError((e as Error).message, spec, argv));
  }
  if (parsed.values.help) return { help: true };
  const max = spec.positionals ?? 0;
  if (parsed.positionals.length > max) {
    const extra = parsed.positionals.slice(max).map((p) => `'${p}'`).join(" ");
    throw new ArgsError(
      `unexpected argument${parsed.positionals.length - max > 1 ? "s" : ""} ${extra}` +
        (max === 0 ? " (this command takes only --flags)" : ` (at most ${max} expected)`),
    );
  }
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  for (const [name, f] of Object.entries(spec.flags)) {
    const raw = (parsed.values as Record<string, string | boolean | undefined>)[name];
    if (raw === undefined) {
      values[name] = f.type === "boolean" ? (f.default ?? false) : f.default;
      continue;
    }
    given.add(name);
    values[name] = convert(name, f, raw);
  }
  return { help: false, values: values as FlagValues<T>, positionals: parsed.positionals, given };
}

function convert(name: string, f: FlagSpec, raw: string | boolean): string | number | boolean {
  if (f.type === "boolean") return raw as boolean;
  const text = String(raw);
  if (f.type === "string") {
    if (f.choices && !f.choices.includes(text)) {
      throw new ArgsError(`--${name} '${text}' is not one of ${f.choices.join(", ")}`);
    }
    if (text === "") throw new ArgsError(`--${name} needs a value`);
    return text;
  }
  // decimal notation only: Number() would also take 0x10, 0b1 and the empty string
  const n = Number(text);
  if (f.type === "integer" && !(INTEGER.test(text) && Number.isSafeInteger(n))) {
    throw new ArgsError(`--${name} '${text}' is not an integer (decimal digits, e.g. 100)`);
  }
  if (!DECIMAL.test(text) || !Number.isFinite(n)) throw new ArgsError(`--${name} '${text}' is not a number`);
  if (f.min !== undefined && n < f.min) {
    throw new ArgsError(`--${name} ${text} is below the minimum ${f.min}`);
  }
  if (f.max !== undefined && n > f.max) {
    throw new ArgsError(`--${name} ${text} is above the maximum ${f.max}`);
  }
  if (f.above !== undefined && !(n > f.above)) {
    throw new ArgsError(`--${name} ${text} is out of range: it must be above ${f.above}`);
  }
  return n;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
const INTEGER = /^[+-]?\d+$/;

/** parseArgs' messages, shortened and pointed at `--help`. */
function cleanParseError(message: string, spec: CommandSpec<FlagTable>, argv: string[]): string {
  const unknown = message.match(/Unknown option '([^']+)'/);
  if (unknown) {
    const near = nearestFlag(unknown[1], Object.keys(spec.flags));
    return `unknown option '${unknown[1]}'` + (near ? ` (did you mean --${near}?)` : "");
  }
  const missing = message.match(/Option '([^']+)' argument missing/);
  if (missing) return `option ${missing[1].split(",").pop()!.trim()} needs a value`;
  const ambiguous = message.match(/Option '([^']+)' argument is ambiguous/);
  if (ambiguous) {
    const flag = ambiguous[1].split(",").pop()!.trim();
    // a negative number: say what is wrong with it (every number flag but a few has a minimum)
    const name = flag.replace(/^-+/, ""), f = spec.flags[name], at = argv.indexOf(flag);
    const value = at < 0 ? undefined : argv[at + 1];
    if (f && f.type !== "string" && value !== undefined && DECIMAL.test(value)) convert(name, f, value);
    return `option ${flag}: a value starting with '-' must be written ${flag}=VALUE`;
  }
  return message.split("\n")[0];
}

/**
 * transformers' TrainingArguments and example scripts' names for what hartley's flags set: a user
 * coming from them types these first.
 */
const HF_NAMES: Readonly<Record<string, string>> = {
  "learning-rate": "lr",
  "output-dir": "out",
  "num-train-epochs": "epochs",
  "max-steps": "steps",
  "per-device-train-batch-size": "batch-size",
  "train-batch-size": "batch-size",
  "gradient-accumulation-steps": "grad-accum",
  "max-seq-length": "seq-len",
  "max-length": "seq-len",
  "block-size": "seq-len",
  "model-name-or-path": "model",
  "train-file": "data",
  "validation-file": "eval-data",
  "eval-steps": "eval-every",
  "save-steps": "save-every",
  "logging-steps": "log-every",
  "lr-scheduler-type": "schedule",
  "lora-r": "r",
  "lora-rank": "r",
  "load-best-model-at-end": "save-best",
  "metric-for-best-model": "best-metric",
  "resume-from-checkpoint": "resume",
  "overwrite-output-dir": "overwrite",
};

/**
 * The flag an unknown one was likely meant as: `_` read as `-`; the flag transformers' name stands
 * for (`--learning-rate` → lr); the one flag it begins (`--warmup` → warmup-ratio); else the nearest
 * name by edit distance, two swapped letters counting one, none when nothing is close (at most a
 * third of the name's letters differ).
 */
export function nearestFlag(unknown: string, names: readonly string[]): string | undefined {
  const flag = unknown.replace(/^-+/, "").replaceAll("_", "-");
  const hf = HF_NAMES[flag];
  if (hf !== undefined && names.includes(hf)) return hf;
  const begun = names.filter((name) => flag.length >= 3 && name.startsWith(flag));
  if (begun.length === 1) return begun[0];
  return nearestName(flag, names);
}

/** The name of `names` nearest `word` by edit distance, if at most a third of its letters differ. */
export function nearestName(word: string, names: readonly string[]): string | undefined {
  let best: string | undefined, bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const name of names) {
    const d = editDistance(word, name);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best;
}

/**
 * Edit distance: the insertions, deletions, substitutions and swaps of two neighbouring letters
 * that turn `a` into `b` (optimal string alignment).
 */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * Refuse the flags of `given` that do not apply to `setting` (e.g. `--method lora`): `applies`
 * maps each flag that applies to some settings only to those. Silently ignoring them would mislead.
 */
export function refuseUnused(
  given: ReadonlySet<string>,
  applies: Readonly<Record<string, readonly string[]>>,
  value: string,
  setting: string,
): void {
  const unused = Object.keys(applies).filter((f) => given.has(f) && !applies[f].includes(value));
  if (unused.length === 0) return;
  const where = unused.map((f, i) =>
    `${i === 0 ? `--${f} applies to` : `--${f} to`} ${applies[f].join(", ")}`
  );
  throw doNotApply(unused, `to ${setting} (${where.join("; ")})`);
}

/**
 * Refuse the flags of `flags` that are in `given`, as not applying where `context` says (e.g.
 * `without --layer`): "--n, --seed do not apply without --layer".
 */
export function refuseGiven(given: ReadonlySet<string>, flags: readonly string[], context: string): void {
  const unused = flags.filter((f) => given.has(f));
  if (unused.length > 0) throw doNotApply(unused, context);
}

/** The usage error "--a, --b do not apply CONTEXT" ("does" for one flag). */
function doNotApply(flags: readonly string[], context: string): ArgsError {
  const list = flags.map((f) => `--${f}`).join(", ");
  return new ArgsError(`${list} ${flags.length > 1 ? "do" : "does"} not apply ${context}`);
}

/** The `--help` text of a command. */
export function helpText<T extends FlagTable>(spec: CommandSpec<T>): string {
  const rows = Object.entries(spec.flags).map(([name, f]) => {
    const arg = f.type === "boolean" ? "" : ` ${f.arg ?? (f.type === "string" ? "TEXT" : "N")}`;
    const left = `${f.short ? `-${f.short}, ` : ""}--${name}${arg}`;
    let right = f.help;
    if (f.choices) right += ` (${f.choices.join(" | ")})`;
    if (f.default !== undefined && f.type !== "boolean") right += ` [default ${f.default}]`;
    return [left, right];
  });
  rows.push(["-h, --help", "show this help"]);
  const width = Math.min(30, Math.max(...rows.map(([l]) => l.length)));
  const lines = rows.map(([l, r]) =>
    l.length > width ? `  ${l}\n  ${" ".repeat(width)}  ${r}` : `  ${l.padEnd(width)}  ${r}`
  );
  return [
    `usage: deno run -A cli.ts ${spec.name} ${spec.usage ?? "[options]"}`,
    "",
    spec.summary,
    "",
    "options:",
    ...lines,
    ...(spec.notes ? ["", spec.notes] : []),
  ].join("\n");
}

/**
 * Run a command body with its parsed flags: prints `--help`, turns an {@link ArgsError} into a
 * message with a pointer to `--help` and exit status 2.
 */
export async function withArgs<T extends FlagTable>(
  spec: CommandSpec<T>,
  argv: string[],
  body: (values: FlagValues<T>, positionals: string[], given: Set<string>) => Promise<number>,
): Promise<number> {
  let parsed: Parsed<T>;
  try {
    parsed = parseCommand(spec, argv);
  } catch (e) {
    if (!(e instanceof ArgsError)) throw e;
    console.error(
      `hartley ${spec.name}: ${e.message}\nRun \`deno run -A cli.ts ${spec.name} --help\` for the options.`,
    );
    return 2;
  }
  if (parsed.help) {
    console.log(helpText(spec));
    return 0;
  }
  try {
    return await body(parsed.values, parsed.positionals, parsed.given);
  } catch (e) {
    if (!(e instanceof ArgsError)) throw explainDeviceError(e, spec.adviceFlags ?? Object.keys(spec.flags));
    Progress.endLines(); // a bar the error stopped keeps its line (cli.ts ends them for other errors)
    console.error(
      `hartley ${spec.name}: ${e.message}\nRun \`deno run -A cli.ts ${spec.name} --help\` for the options.`,
    );
    return 2;
  }
}

/** A comma-separated list flag as its non-empty items (undefined stays undefined). */
export function listOf(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}
