/**
 * `hartley pretrain`: train a model of a family's architecture from random initialisation as
 * a causal language model on a text file (or the packaged Brown corpus). It writes the
 * initial model into `<out>/init/` (lib/cli/pretrain_init.ts: config.json from the size flags or
 * `--config`, weights from lib/train/init.ts, the tokenizer's files) and runs `train --method full
 * --task causal-lm` on it, so progress, the run log, checkpoints, Ctrl-C and `--resume` work as for
 * fine-tuning. init/ records the options the run was started with: `--resume --out DIR` alone continues
 * it with them, and an option given again that differs is refused.
 * `--export DIR` copies the final model there with a `pretraining.json` record of the recipe
 * and its held-out loss and perplexity (how models/default was made).
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { writeDirAtomic } from "../io/atomic.ts";
import { readRunLog } from "../train/log.ts";
import { findCheckpoint } from "../train/checkpoint.ts";
import {
  ArgsError,
  ATTENTION_FLAG,
  CHECKPOINTING_FLAG,
  checkShipped,
  type CommandSpec,
  type FlagTable,
  type FlagValues,
  refuseGiven,
  SEED_MAX,
  shippedPath,
  withArgs,
} from "./args.ts";
import { trainCommand } from "./train.ts";
import { isWithin, pathExists, statOrNull } from "../io/paths.ts";
import { checkOutDir, PREVIOUS_INIT, resumedOut, runArgs, shellLine } from "./run_dir.ts";
import { checkOutputDir } from "./output.ts";
import { isBuiltinData } from "./setup.ts";
import { initChanges, type InitModel, initModel, type ModelFlags, writeInitModel } from "./pretrain_init.ts";

const FLAGS = {
  family: { type: "string", choices: ["gpt2", "llama"], default: "gpt2", help: "architecture family" },
  config: {
    type: "string",
    arg: "FILE",
    help:
      "a config.json (or a model folder holding one) to start from, instead of --family and the size flags",
  },
  layers: { type: "integer", default: 2, min: 1, help: "transformer blocks" },
  hidden: { type: "integer", default: 64, min: 8, help: "hidden size" },
  heads: { type: "integer", default: 4, min: 1, help: "attention heads (divides --hidden)" },
  intermediate: { type: "integer", min: 1, help: "MLP inner size [default: 4 × hidden]" },
  positions: {
    type: "integer",
    default: 128,
    min: 2,
    help: "context length the model supports (--seq-len stays within it)",
  },
  dropout: {
    type: "number",
    default: 0,
    min: 0,
    max: 0.9,
    help: "dropout in training: gpt2's of embeddings, attention and residuals (embd_pdrop, attn_pdrop, " +
      "resid_pdrop); llama's of attention probabilities, its only one (attention_dropout)",
  },
  tokenizer: {
    type: "string",
    default: shippedPath("models/default/tokenizer.json"),
    arg: "FILE",
    help: "tokenizer.json, or a folder holding one, copied with the tokenizer_config.json, " +
      "special_tokens_map.json and chat_template.jinja beside it (its size sets vocab_size; its special " +
      "tokens the bos, eos and pad ids)",
  },
  data: {
    type: "string",
    default: "brown",
    arg: "PATH",
    help: "plain text file, or brown (the Brown corpus)",
  },
  "eval-fraction": {
    type: "number",
    default: 0.05,
    min: 0,
    max: 0.9,
    help: "tail of the tokens held out (--data brown: its fixed last 5%)",
  },
  "seq-len": { type: "integer", default: 64, min: 2, help: "tokens per training window" },
  "batch-size": { type: "integer", default: 16, min: 1, help: "windows per step" },
  epochs: { type: "number", default: 1, min: 0.001, help: "passes over the training text" },
  steps: { type: "integer", min: 1, help: "optimiser steps (overrides --epochs)" },
  lr: { type: "number", default: 3e-3, above: 0, help: "peak learning rate" },
  schedule: { type: "string", choices: ["linear", "cosine", "constant"], default: "cosine", help: "decay" },
  "warmup-ratio": { type: "number", default: 0.03, min: 0, max: 1, help: "share of steps of warmup" },
  "weight-decay": { type: "number", default: 0.01, min: 0, help: "decoupled weight decay of matrices" },
  "max-grad-norm": { type: "number", default: 1, min: 0, help: "gradient clipping (0: off)" },
  "max-train": { type: "integer", min: 1, help: "train on only this many windows" },
  "max-eval": { type: "integer", min: 1, help: "evaluate on only this many windows" },
  "eval-every": { type: "integer", default: 0, min: 0, help: "steps between evaluations (0: at the end)" },
  "log-every": { type: "integer", default: 20, min: 1, help: "steps between log lines" },
  "save-every": { type: "integer", default: 200, min: 0, help: "steps between checkpoints" },
  seed: {
    type: "integer",
    default: 0,
    min: 0,
    max: SEED_MAX,
    help: "seed of the initialisation and data order",
  },
  attention: ATTENTION_FLAG,
  "gradient-checkpointing": CHECKPOINTING_FLAG,
  out: {
    type: "string",
    default: "runs/pretrain",
    arg: "DIR",
    help: "run directory (init/, model/, log, checkpoint)",
  },
  export: {
    type: "string",
    arg: "DIR",
    help:
      "copy the final model here, with pretraining.json (replacing an earlier export; other folders need --overwrite)",
  },
  resume: {
    type: "boolean",
    help: "continue the run in --out with the options it was started with (those given again must match)",
  },
  "stop-at": {
    type: "integer",
    min: 1,
    help: "stop after this step with a checkpoint, as Ctrl-C does, exiting 0 (continue later with --resume)",
  },
  overwrite: {
    type: "boolean",
    help: "start over in an --out that holds a run; replace any --export folder",
  },
  quiet: {
    type: "boolean",
    short: "q",
    help: "no progress bar, run header or evaluation lines (the closing lines stay)",
  },
} as const;

/** The arguments of `deno task pretrain-default`, which made `models/default` (deno.json; tested equal). */
export const PRETRAIN_DEFAULT =
  "pretrain --family gpt2 --layers 2 --hidden 64 --heads 4 --positions 128 --tokenizer models/default/tokenizer.json --data brown --seq-len 64 --batch-size 16 --steps 600 --lr 3e-3 --max-eval 256 --out runs/pretrain-default --export models/default";

const SPEC: CommandSpec<typeof FLAGS> = {
  name: "pretrain",
  summary: "Train a model from random initialisation as a causal LM on a text file (full training).",
  flags: FLAGS,
  notes: [
    "The embedded default model is made with `deno task pretrain-default` (deno.json), that is:",
    "  deno run -A cli.ts " + PRETRAIN_DEFAULT,
  ].join("\n"),
};

/** The flags that size a fresh model, which --config replaces. */
const SIZE_FLAGS = ["family", "layers", "hidden", "heads", "intermediate", "positions", "dropout"];

type Values = FlagValues<typeof FLAGS>;

/** The flags that define the initial model: a resumed run compares them with its init/ when given. */
const INIT_FLAGS = [...SIZE_FLAGS, "config", "tokenizer"];

/**
 * The file in init/ that records the options the run was started with: in a folder of its own,
 * which train does not copy into the model it saves (nor --export into the export).
 */
const RECORD = "recipe/pretrain_args.json";

/** The flags whose values are paths: recorded resolved, so that a run resumes from any folder. */
const PATH_FLAGS = new Set(["data", "config", "tokenizer", "export", "out"]);

/** `hartley pretrain`. */
export async function pretrainCommand(args: string[]): Promise<number> {
  const run = await withRecordedArgs(args);
  const session = new Set(optionsOf(args).map((o) => o.name));
  return withArgs(SPEC, run, (v, _, given) => pretrain(v, given, run, session));
}

/**
 * Pretrain as `v` says (`given`: the flags set, from the command line `args`); `session`: the flags
 * given this session, a resumed run's model being compared with its init/ only when one sets it.
 */
async function pretrain(
  v: Values,
  given: Set<string>,
  args: string[],
  session: Set<string>,
): Promise<number> {
  checkSizes(v, given);
  await checkOutDir(v.out, v.resume, v.overwrite, { config: v.config, tokenizer: v.tokenizer });
  if (v.export) await checkExport(v.export, v.out, v.overwrite);
  const initDir = join(v.out, "init");
  // a run that fails before it starts leaves no init/ (nor an --out this session made)
  const madeOut = !(await pathExists(v.out));
  // checked before anything is written; a resumed run trains its init/, which flags left out match
  const init = v.resume && !INIT_FLAGS.some((f) => session.has(f)) ? null : await initOf(v);
  const trainArgs = trainArgsOf(v, given);
  if (v.resume) {
    // a session that replaced init/ was stopped before its run started: the run's own is set aside
    await restoreInit(v.out);
    await checkResumable(v, init, trainArgs);
  }
  let code = 1;
  try {
    if (!v.resume) {
      if (v.overwrite) await setAsideInit(v.out);
      await writeDirAtomic(initDir, async (tmp) => {
        await writeInitModel(tmp, init!, v.seed);
        await Deno.mkdir(dirname(join(tmp, RECORD)));
        const record = { args: runArgs(args), cwd: Deno.cwd() };
        await Deno.writeTextFile(join(tmp, RECORD), JSON.stringify(record, null, 1) + "\n");
      });
    }
    code = await trainCommand(trainArgs, {
      name: "pretrain",
      flags: Object.keys(FLAGS),
      resume: resumeCommand(args),
    });
  } finally {
    if (code !== 0 && !v.resume) await removeUnstarted(v.out, madeOut);
  }
  // a run stopped by --stop-at is not over: nothing to export yet
  if (code !== 0 || !v.export || !(await pathExists(join(v.out, "model")))) return code;
  await exportModel(join(v.out, "model"), v.export, v.out, args);
  console.error(`exported ${v.export}`);
  return 0;
}

/** The initial model the flags describe; a default --tokenizer that cannot be read is refused. */
function initOf(v: Values): Promise<InitModel> {
  checkShipped("tokenizer", v.tokenizer, "FILE");
  return initModel(modelFlags(v));
}

/** train's command line for the run `v` describes: the model in init/, trained fully as a causal LM. */
function trainArgsOf(v: Values, given: ReadonlySet<string>): string[] {
  const pass = (name: string, value: unknown) => value === undefined ? [] : [`--${name}`, String(value)];
  return [
    ...pass("model", join(v.out, "init")),
    ...pass("data", v.data),
    ...pass("task", "causal-lm"),
    ...pass("method", "full"),
    // the Brown corpus holds out its last 5%, whatever the flag's default says
    ...(given.has("eval-fraction") || v.data !== "brown" ? pass("eval-fraction", v["eval-fraction"]) : []),
    ...pass("seq-len", v["seq-len"]),
    ...pass("batch-size", v["batch-size"]),
    ...pass("epochs", v.epochs),
    ...pass("steps", v.steps),
    ...pass("lr", v.lr),
    ...pass("schedule", v.schedule),
    ...pass("warmup-ratio", v["warmup-ratio"]),
    ...pass("weight-decay", v["weight-decay"]),
    ...pass("max-grad-norm", v["max-grad-norm"]),
    ...pass("max-train", v["max-train"]),
    ...pass("max-eval", v["max-eval"]),
    ...pass("eval-every", v["eval-every"]),
    ...pass("log-every", v["log-every"]),
    ...pass("save-every", v["save-every"]),
    ...pass("seed", v.seed),
    ...pass("attention", v.attention),
    ...(v["gradient-checkpointing"] ? ["--gradient-checkpointing"] : []),
    ...pass("out", v.out),
    ...(v.resume ? ["--resume"] : []),
    ...pass("stop-at", v["stop-at"]),
    ...(v.overwrite ? ["--overwrite"] : []),
    ...(v.quiet ? ["--quiet"] : []),
  ];
}

/**
 * With `--resume`, the options the run in --out was started with (its init/'s record) with those of
 * `args` in their place, so that `--resume --out DIR` alone continues it; `args` otherwise, and for a
 * run without a record.
 */
async function withRecordedArgs(args: string[]): Promise<string[]> {
  const out = resumedOut(args, FLAGS.out.default);
  const recorded = out === null ? null : await recordedArgs(out);
  if (!recorded) return args;
  const given = optionsOf(args);
  const displaced = new Set(given.flatMap((o) => DISPLACES[o.name] ?? []));
  const merged = optionsOf(recorded).filter((o) => !displaced.has(o.name));
  for (const option of given) {
    const at = merged.findIndex((o) => o.name === option.name);
    if (at < 0) merged.push(option);
    else merged[at] = option;
  }
  return merged.flatMap((o) => o.words);
}

/**
 * The recorded options an option given on --resume takes the place of besides its own: --config
 * and the size flags are alternatives; --epochs sets the length --steps would override.
 */
const DISPLACES: Readonly<Record<string, readonly string[]>> = {
  config: SIZE_FLAGS,
  ...Object.fromEntries(SIZE_FLAGS.map((f) => [f, ["config"]])),
  epochs: ["steps"],
};

/**
 * Recorded options `args`, given in folder `cwd`, as they read from the working directory: their
 * relative paths resolved from `cwd` when that is another (not the built-in `brown`).
 */
function fromFolder(args: string[], cwd: string): string[] {
  if (resolve(cwd) === resolve(".")) return args;
  return optionsOf(args).flatMap(({ name, words }) => {
    const [flag, value] = words.length === 2 ? words : words[0].split(/=(.*)/s, 2);
    if (!PATH_FLAGS.has(name) || value === undefined || (name === "data" && isBuiltinData(value))) {
      return words;
    }
    return [flag, resolve(cwd, value)];
  });
}

/**
 * The options the run in `out` was started with, as its init/ records them (the init/ a stopped
 * --overwrite set aside first: it is the run's), read from this working directory; null when
 * there is no record.
 */
async function recordedArgs(out: string): Promise<string[] | null> {
  for (const dir of [PREVIOUS_INIT, "init"]) {
    const file = join(out, dir, RECORD);
    let text;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      throw e;
    }
    let record: { args?: unknown; cwd?: unknown } = {};
    try {
      record = JSON.parse(text);
    } catch {
      // read as not a record below
    }
    const { args, cwd } = record;
    if (Array.isArray(args) && args.every((a) => typeof a === "string") && typeof cwd === "string") {
      return fromFolder(args, cwd);
    }
    throw new Error(
      `${file}: expected {"args": [...], "cwd": "..."}, the options the run was started with and where`,
    );
  }
  return null;
}

/** One option of a command line: its flag's name and its words (`--lr 0.1`, `--lr=0.1`, `-q`). */
interface Option {
  name: string;
  words: string[];
}

/** The options of pretrain's command line `args` (each flag but a boolean takes the next word). */
function optionsOf(args: string[]): Option[] {
  const flags: FlagTable = FLAGS;
  const options: Option[] = [];
  for (let k = 0; k < args.length; k++) {
    const [flag] = args[k].split("=", 1);
    const name = flag.startsWith("--")
      ? flag.slice(2)
      : Object.keys(flags).find((n) => `-${flags[n].short}` === flag) ?? flag;
    const valued = !args[k].includes("=") && flags[name] !== undefined && flags[name].type !== "boolean";
    options.push({ name, words: valued ? args.slice(k, ++k + 1) : [args[k]] });
  }
  return options;
}

/**
 * The command that continues a pretraining run started with `args` (pretrain's, without the command
 * name): the same options with --resume (pretrain passes them all to train), as the task when they
 * are `deno task pretrain-default`'s.
 */
export function resumeCommand(args: string[]): string {
  const run = runArgs(args);
  if (shellLine(run) === PRETRAIN_DEFAULT.replace(/^pretrain /, "")) {
    return "deno task pretrain-default --resume";
  }
  return `deno run -A cli.ts ${shellLine(["pretrain", ...run, "--resume"])}`;
}

/** Refuse the size flags beside --config (it gives the sizes), and sizes that make no model. */
function checkSizes(v: Values, given: ReadonlySet<string>): void {
  if (v.config) {
    refuseGiven(given, SIZE_FLAGS, "with --config, whose config.json gives the model's family and sizes");
    return;
  }
  if (v.hidden % v.heads !== 0) throw new ArgsError(`--heads ${v.heads} must divide --hidden ${v.hidden}`);
  const headDim = v.hidden / v.heads;
  if (v.family === "llama" && headDim % 2 !== 0) {
    throw new ArgsError(
      `--hidden ${v.hidden} / --heads ${v.heads} gives heads of ${headDim} dimensions; ` +
        `llama's rotary embeddings (RoPE) need an even number`,
    );
  }
}

/** The flags that define the initial model. */
function modelFlags(v: Values): ModelFlags {
  return { ...v, seqLen: v["seq-len"] };
}

/**
 * With --overwrite, keep the init/ of the run in `out` as init.previous until the new run starts
 * (train's clearOutDir removes it with the run's other files), so that a new run refused for its
 * data or flags leaves the old one resumable. One already set aside (by a session stopped before its
 * run started) is the run's own: it stays.
 */
async function setAsideInit(out: string): Promise<void> {
  const init = join(out, "init"), previous = join(out, PREVIOUS_INIT);
  if (!(await pathExists(init))) return;
  if (await pathExists(previous)) await Deno.remove(init, { recursive: true });
  else await Deno.rename(init, previous);
}

/** Put back the init/ {@link setAsideInit} kept; whether there was one. */
async function restoreInit(out: string): Promise<boolean> {
  const previous = join(out, PREVIOUS_INIT);
  if (!(await pathExists(previous))) return false;
  await Deno.remove(join(out, "init"), { recursive: true }).catch(() => {});
  await Deno.rename(previous, join(out, "init"));
  return true;
}

/**
 * Remove the init/ of a run that failed before it started (no run log: its data or flags were
 * refused), and --out itself when this session made it and nothing else is in it; with
 * --overwrite, put back the init/ of the run it would have replaced.
 */
async function removeUnstarted(out: string, madeOut: boolean): Promise<void> {
  if (await restoreInit(out)) return;
  if (await pathExists(join(out, "log.jsonl"))) return;
  await Deno.remove(join(out, "init"), { recursive: true }).catch(() => {});
  if (madeOut) await Deno.remove(out).catch(() => {});
}

/**
 * The flags passed to train that its checkpoint must match (train's fingerprint), checked here to
 * name them as pretrain's: the run's length is --steps where either session gives it, else --epochs.
 */
const RUN_FLAGS = [
  "data",
  "eval-fraction",
  "seq-len",
  "batch-size",
  "lr",
  "schedule",
  "warmup-ratio",
  "weight-decay",
  "max-grad-norm",
  "max-train",
  "seed",
];

/**
 * Refuse to resume the run in --out with a model other than its init/ (`init`: what the flags
 * describe, null when none was given: the run's own) or other training settings, naming each flag
 * that differs.
 */
async function checkResumable(v: Values, init: InitModel | null, trainArgs: string[]): Promise<void> {
  const changes = init ? await initChanges(init, join(v.out, "init"), modelFlags(v)) : [];
  const saved = await startedArgs(v.out);
  if (saved) {
    const [was, now] = [flagValues(saved), flagValues(runArgs(trainArgs))];
    const length = was.has("steps") || now.has("steps") ? "steps" : "epochs";
    // a data file's path as train compares it: from the working directory
    const path = (x?: string) => x === undefined || isBuiltinData(x) ? x : resolve(x);
    for (const flag of [...RUN_FLAGS, length]) {
      const [a, b] = [was.get(flag), now.get(flag)];
      if (flag === "data" ? path(a) === path(b) : a === b) continue;
      changes.push(`--${flag}: ${a ?? "unset"} → ${b ?? "unset"}`);
    }
  }
  if (changes.length > 0) {
    throw new ArgsError(
      `--resume: the run in ${v.out} was started with other options; resume with the same ones ` +
        `(differences: ${changes.join("; ")})`,
    );
  }
}

/** The options (train's, as pretrain passed them) the run in `out` was started with; null if unknown. */
async function startedArgs(out: string): Promise<string[] | null> {
  const ckpt = await findCheckpoint(out);
  if (!ckpt) return null;
  const args = JSON.parse(await Deno.readTextFile(join(ckpt, "trainer_state.json"))).args;
  return Array.isArray(args) && args.every((a) => typeof a === "string") ? args : null;
}

/**
 * Each `--name value` of `args`, options as pretrain passes them to train (each takes a value but
 * --gradient-checkpointing).
 */
function flagValues(args: string[]): Map<string, string> {
  const values = new Map<string, string>();
  for (let k = 0; k < args.length; k++) {
    if (!args[k].startsWith("--") || args[k] === "--gradient-checkpointing") continue;
    values.set(args[k].slice(2), args[++k]);
  }
  return values;
}

/**
 * Refuse, before training, an --export that would take the run or the working directory with it,
 * or replace a folder that holds no earlier export (pretraining.json) without --overwrite.
 */
async function checkExport(dest: string, out: string, overwrite: boolean | undefined): Promise<void> {
  if (isWithin(out, dest)) {
    throw new ArgsError(`--export ${dest} holds the run directory --out ${out}: export elsewhere`);
  }
  if (isWithin(Deno.cwd(), dest)) {
    throw new ArgsError(`--export ${dest} holds the working directory: export elsewhere`);
  }
  await checkOutputDir("export", dest, { whole: true });
  const stat = await statOrNull(dest);
  if (!stat) return;
  if (overwrite || await pathExists(join(dest, "pretraining.json"))) return;
  for await (const _ of Deno.readDir(dest)) {
    throw new ArgsError(
      `--export ${dest} holds files but no earlier export (pretraining.json): pass --overwrite to replace it`,
    );
  }
}

/**
 * Replace `dest` as a whole (no file of an older export stays) with the final model and a record
 * of the run in pretraining.json.
 */
async function exportModel(modelDir: string, dest: string, runDir: string, argv: string[]): Promise<void> {
  const record = await pretrainingRecord(runDir, argv);
  await writeDirAtomic(dest, async (tmp) => {
    for await (const e of Deno.readDir(modelDir)) {
      if (e.isFile) await Deno.copyFile(join(modelDir, e.name), join(tmp, e.name));
    }
    await Deno.writeTextFile(join(tmp, "pretraining.json"), JSON.stringify(record, null, 1) + "\n");
  });
}

/** What pretraining.json records of the run in `runDir`. */
async function pretrainingRecord(runDir: string, argv: string[]): Promise<Record<string, unknown>> {
  const records = await readRunLog(join(runDir, "log.jsonl"));
  const start = records.find((r) => r.type === "start");
  const evals = records.filter((r) => r.type === "eval");
  const end = records.filter((r) => r.type === "end").pop();
  const trains = records.filter((r) => r.type === "train");
  const last = evals[evals.length - 1];
  return {
    // the recipe: how the run was started (without the options of one session, --resume, -q, …)
    command: `deno run -A cli.ts ${shellLine(["pretrain", ...runArgs(argv)])}`,
    data: start?.data,
    seq_len: start?.seqLen,
    batch_size: start?.batchSize,
    steps: end?.step,
    tokens: trains[trains.length - 1]?.tokens,
    train_seconds: trains[trains.length - 1]?.elapsed_s,
    held_out: last
      ? { loss: last.loss, perplexity: last.perplexity, windows: last.examples, tokens: last.targets }
      : null,
    held_out_split:
      "the last eval-fraction of the token stream, in non-overlapping windows of seq-len + 1 tokens",
    loss_curve: trains.map((r) => [r.step, r.loss]),
    run_dir: runDir,
  };
}
