/**
 * The flags of `hartley train`: their types, defaults, limits and help (the adapter flags'
 * defaults are the library's configs in lib/peft/config.ts).
 * @module
 */
import { FOURIERFT_DEFAULTS, LORA_DEFAULTS, SSH_DEFAULTS } from "../peft/config.ts";
import { TRANSFORMS } from "../spectral/transforms.ts";
import { TASKS } from "../train/tasks.ts";
import {
  ATTENTION_FLAG,
  CHECKPOINTING_FLAG,
  DEFAULT_MODEL,
  DTYPE_FLAG,
  FIELD_FLAGS,
  type FlagValues,
  LOSS_ON_FLAG,
  SEED_MAX,
  TEMPLATE_KWARGS_FLAG,
} from "./args.ts";
import { DEFAULT_HEAD_LR, METHODS } from "./method.ts";

/** `hartley train`'s flags. */
export const FLAGS = {
  model: {
    type: "string",
    default: DEFAULT_MODEL,
    arg: "DIR",
    help: "Hugging Face model directory to fine-tune",
  },
  data: {
    type: "string",
    arg: "PATH",
    help:
      "training data: .jsonl/.csv/.tsv, or a datasets split (.parquet, .arrow or a save_to_disk folder), " +
      "with text+label, tokens+ner_tags records or a .conll file " +
      "(token classification), .txt (or records' text without labels) " +
      "for causal LM, records with prompt+completion or messages (instruction tuning), " +
      "a folder of class folders (PNG/JPEG), a datasets split or .jsonl for images, or a built-in set: " +
      "spamassassin, brown [default: by task]",
  },
  "eval-data": {
    type: "string",
    arg: "PATH",
    help: "separate eval file (default: hold out --eval-fraction)",
  },
  "eval-fraction": {
    type: "number",
    default: 0.1,
    min: 0,
    max: 0.9,
    help: "share of --data held out for eval (the built-in sets' splits are fixed)",
  },
  task: { type: "string", choices: TASKS, help: "task [default: from the data and the model]" },
  method: { type: "string", choices: METHODS, default: "ssh", help: "fine-tuning method" },
  // the adapter flags default to the library's configs (lib/peft/config.ts), but --lora-alpha
  n: {
    type: "integer",
    min: 1,
    help: "SSH/FourierFT coefficients per layer " +
      `[default: ssh ${SSH_DEFAULTS.n}, fourierft ${FOURIERFT_DEFAULTS.nFrequency} (PEFT's n_frequency)]`,
  },
  "energy-ratio": {
    type: "number",
    default: SSH_DEFAULTS.energyRatio,
    min: 0,
    max: 1,
    help: "SSH share of positions chosen by energy",
  },
  alpha: {
    type: "number",
    above: 0,
    help:
      `SSH alpha (FourierFT scaling) [default: ssh ${SSH_DEFAULTS.alpha}, fourierft ${FOURIERFT_DEFAULTS.scaling}]`,
  },
  transform: {
    type: "string",
    choices: TRANSFORMS,
    default: SSH_DEFAULTS.transform,
    help: "SSH spectral transform",
  },
  selection: {
    type: "string",
    choices: ["layer", "global"],
    default: SSH_DEFAULTS.selection,
    help: "SSH position budget scope",
  },
  init: {
    type: "string",
    choices: ["normal", "zeros"],
    default: SSH_DEFAULTS.init,
    help: "SSH coefficient init",
  },
  "target-modules": {
    type: "string",
    arg: "LIST",
    help: "layers to adapt: comma-separated names, a regex, or all-linear [default: per family]",
  },
  r: { type: "integer", default: LORA_DEFAULTS.r, min: 1, help: "LoRA rank" },
  // deliberately not PEFT's lora_alpha 8 (LORA_DEFAULTS): 2·r, the usual setting (the README's flag list says 16)
  "lora-alpha": { type: "number", default: 16, above: 0, help: "LoRA alpha (PEFT's default: 8)" },
  "lora-dropout": {
    type: "number",
    default: LORA_DEFAULTS.loraDropout,
    min: 0,
    max: 0.99,
    help: "LoRA dropout",
  },
  epochs: { type: "number", default: 3, min: 0.001, help: "passes over the training data" },
  steps: { type: "integer", min: 1, help: "optimiser steps (overrides --epochs)" },
  "batch-size": { type: "integer", default: 16, min: 1, help: "examples per batch" },
  "grad-accum": {
    type: "integer",
    default: 1,
    min: 1,
    help: "batches whose gradients add up to one optimiser step (effective batch: batch-size × this)",
  },
  "seq-len": { type: "integer", default: 128, min: 2, help: "tokens per example (longer rows are cut)" },
  lr: {
    type: "number",
    above: 0,
    help:
      "learning rate of the adapter (or of every weight for full, the head too, unless --head-lr is given) " +
      "[default: ssh/fourierft 0.05, lora 5e-4, full 5e-5]",
  },
  "head-lr": {
    type: "number",
    min: 0,
    help: `learning rate of the task head [default: ${DEFAULT_HEAD_LR}; full: --lr]`,
  },
  schedule: {
    type: "string",
    choices: ["linear", "cosine", "constant"],
    default: "linear",
    help: "decay after warmup",
  },
  "warmup-ratio": {
    type: "number",
    default: 0.06,
    min: 0,
    max: 1,
    help: "share of steps of linear warmup (transformers' Trainer: 0)",
  },
  "weight-decay": {
    type: "number",
    default: 0,
    min: 0,
    help:
      "decoupled (AdamW) weight decay, of the weights but not the biases and norms, as transformers' Trainer",
  },
  "max-grad-norm": {
    type: "number",
    default: 1,
    min: 0,
    help: "clip gradients to this global norm (0: off)",
  },
  "eval-every": {
    type: "integer",
    default: 0,
    min: 0,
    help: "steps between evaluations (0: at the end only)",
  },
  "save-best": {
    type: "boolean",
    help: "keep the weights of the best evaluation in OUT/best (with --eval-every)",
  },
  "early-stop": {
    type: "integer",
    min: 1,
    arg: "N",
    help: "stop after N evaluations in a row that are not better (with --eval-every)",
  },
  "best-metric": {
    type: "string",
    choices: [
      "accuracy",
      "loss",
      "mcc",
      "f1",
      "f1-macro",
      "precision",
      "recall",
      "pearson",
      "spearman",
      "token-accuracy",
    ],
    help:
      "what --save-best and --early-stop compare [default: accuracy; f1 for entity tags; pearson for regression; loss for causal LM]",
  },
  "log-every": {
    type: "integer",
    default: 10,
    min: 1,
    help: "steps between train log lines, each the mean loss of its steps",
  },
  "save-every": {
    type: "integer",
    default: 200,
    min: 0,
    help: "steps between checkpoints (0: at the end only)",
  },
  seed: {
    type: "integer",
    default: 0,
    min: 0,
    max: SEED_MAX,
    help: "seed of data order, dropout, positions and init, and of which examples of a labelled file " +
      "--eval-fraction holds out (a causal LM's text holds out its end) and SpamAssassin's --max-train/--max-eval " +
      `keep (FourierFT's positions: its random_loc_seed, when given, else PEFT's ${FOURIERFT_DEFAULTS.randomLocSeed})`,
  },
  out: {
    type: "string",
    default: "runs/train",
    arg: "DIR",
    help: "output directory (adapter/ or model/, log.jsonl, checkpoint/, best/)",
  },
  resume: { type: "boolean", help: "continue the run in --out from its checkpoint" },
  "stop-at": {
    type: "integer",
    min: 1,
    help: "stop after this step with a checkpoint, as Ctrl-C does, exiting 0 (continue later with --resume)",
  },
  overwrite: { type: "boolean", help: "start over in an --out that already holds a run" },
  dtype: DTYPE_FLAG,
  attention: ATTENTION_FLAG,
  "gradient-checkpointing": CHECKPOINTING_FLAG,
  "max-train": {
    type: "integer",
    min: 1,
    help: "use only this many training examples (windows for causal LM)",
  },
  "max-eval": { type: "integer", min: 1, help: "evaluate on only this many examples" },
  ...FIELD_FLAGS,
  "loss-on": LOSS_ON_FLAG,
  "template-kwargs": TEMPLATE_KWARGS_FLAG,
  "image-memory": {
    type: "string",
    arg: "SIZE",
    help: "decoded images a run holds in memory at most, e.g. 4GiB (default: a quarter of this machine's " +
      "memory); the images past it (every image is decoded once first, to check it) are decoded again for each batch",
  },
  "group-by-length": {
    type: "boolean",
    help: "batch rows of similar length together (less padding; texts of varied lengths train faster)",
  },
  regression: {
    type: "boolean",
    help: "the labels are real values (e.g. STS-B): one output trained with mean squared error",
  },
  "new-head": {
    type: "boolean",
    help:
      "start a new classification head for the data's classes, dropping the checkpoint's (whether or not " +
      "its classes differ)",
  },
  demo: {
    type: "boolean",
    help: "also train the head alone for the same budget and compare held-out accuracy",
  },
  quiet: {
    type: "boolean",
    short: "q",
    help: "no progress bar, run header or evaluation lines (the closing lines stay)",
  },
} as const;

/** The values of train's flags, as parsed. */
export type TrainValues = FlagValues<typeof FLAGS>;
