/**
 * The task of a run and the model config it is chosen from: reading a model directory's
 * config.json ({@link readModelConfig}), the task its head does, the task to train when --task
 * is not given (from the data, else the head: {@link chooseTask}), the refusal of a task the
 * model's family has no head for, each task's default data and the flags only some tasks take,
 * and a task or model type named with its article ({@link withArticle}). `train`, `eval` and the
 * commands that load a model for use (lib/cli/load.ts) share them.
 * @module
 */
import { isAbsolute, join } from "node:path";
import { type HfConfig, loadHfConfig } from "../io/hf_config.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import { pathExists } from "../io/paths.ts";
import { getFamily } from "../models/registry.ts";
import { labelFieldOf, recordFieldNames } from "../train/readers.ts";
import { DataError } from "../train/data_error.ts";
import { isConllFile, isTaggedRecord } from "../train/token_data.ts";
import { type TaskName, TASKS } from "../train/tasks.ts";
import { ArgsError } from "./args.ts";

/**
 * The flags of `train` and `eval` that only some tasks use, and those tasks (the others refuse
 * them: ignoring them silently would mislead).
 */
export const TASK_FLAGS: Readonly<Record<string, readonly TaskName[]>> = {
  "text-field": ["seq-cls", "token-cls", "causal-lm"],
  "pair-field": ["seq-cls"],
  "label-field": ["seq-cls", "token-cls", "image-cls"],
  regression: ["seq-cls"],
  "loss-on": ["causal-lm"],
  "template-kwargs": ["causal-lm"],
  "group-by-length": ["seq-cls", "token-cls", "causal-lm"],
  // a causal LM's output layer is no task head
  "head-lr": ["seq-cls", "token-cls", "image-cls"],
  "image-memory": ["image-cls"],
};

/**
 * `word` after its indefinite article, chosen by how it is said: by its first letter ("an
 * image-cls", "a seq-cls", "a gpt2"), or for a number by its first word ("an 8-class", "an
 * 11-class", "an 18,000-token", "a 110-class").
 */
export function withArticle(word: string): string {
  const digits = /^\d[\d,]*/.exec(word)?.[0].replaceAll(",", "");
  const vowel = digits === undefined
    ? /^[aeiou]/i.test(word)
    : digits.startsWith("8") || (digits.length % 3 === 2 && /^1[18]/.test(digits));
  return `${vowel ? "an" : "a"} ${word}`;
}

/** The task a model directory's head does, from config.json `architectures[0]`. */
export function taskOfConfig(config: HfConfig): TaskName | null {
  const arch = config.architectures[0] ?? "";
  if (arch.endsWith("ForSequenceClassification")) return "seq-cls";
  if (arch.endsWith("ForTokenClassification")) return "token-cls";
  if (arch.endsWith("ForImageClassification")) return "image-cls";
  if (arch.endsWith("LMHeadModel") || arch.endsWith("ForCausalLM")) return "causal-lm";
  return null;
}

/**
 * Refuse, before the weights load, a task that `config`'s family has no head for, naming the
 * --task values that fit. `origin`: where the task came from: the --task flag, a default (from the
 * data, the adapter or the config), or the command itself (chat).
 */
export function checkTaskFits(
  task: TaskName,
  config: HfConfig,
  dir: string,
  origin: "flag" | "default" | "command",
): void {
  const family = getFamily(config.modelType);
  const fits = TASKS.filter((t) => family?.architectures[t] !== undefined);
  // an unknown family is loadModel's to name
  if (!family || fits.includes(task)) return;
  const nature = config.modelType === "vit"
    ? "it is a ViT, which takes images (task image-cls)"
    : `${withArticle(config.modelType)} model has no ${task} head`;
  const choices = fits.length > 1 ? `${fits.slice(0, -1).join(", ")} or ${fits[fits.length - 1]}` : fits[0];
  throw new ArgsError(
    origin === "flag"
      ? `--task ${task} does not fit ${dir}: ${nature}; give --task ${choices}`
      : origin === "default"
      ? `${dir}: ${nature}; give --task ${choices}`
      : `${dir}: ${nature}`,
  );
}

/**
 * The task to train: the flag, else from the data (text → causal LM; a CoNLL file, or records of
 * words and their tags → token classification; records with the label field → sequence
 * classification; records without it → causal LM for a model that can be one, e.g.
 * prompt/completion or conversation records), else the model's head.
 */
export async function chooseTask(
  flag: string | undefined,
  data: string,
  config: HfConfig,
  labelField?: string,
): Promise<TaskName> {
  if (flag) return flag as TaskName;
  if (config.modelType === "vit") return "image-cls";
  if (data === "brown" || /\.txt$/i.test(data)) return "causal-lm";
  if (data === "spamassassin") return "seq-cls";
  if (isConllFile(data)) return "token-cls";
  const fields = await recordFieldNames(data);
  if (fields) {
    if (isTaggedRecord(fields, labelField)) return "token-cls";
    if (fields.includes(labelFieldOf(fields, labelField))) return "seq-cls";
    // a classifier's data without labels: the reader names the missing field
    const decoder = getFamily(config.modelType)?.architectures["causal-lm"] !== undefined;
    return decoder && taskOfConfig(config) !== "seq-cls" ? "causal-lm" : "seq-cls";
  }
  return taskOfConfig(config) ?? "seq-cls";
}

/** The default data set of a task; none for token-cls and image-cls (`--data` must be given: exit 2). */
export function defaultData(task: TaskName): string {
  if (task === "causal-lm") return "brown";
  if (task === "seq-cls") return "spamassassin";
  if (task === "token-cls") {
    throw new ArgsError(
      `task token-cls has no built-in data set: pass --data FILE (JSONL or a datasets split, .parquet, .arrow ` +
        `or a save_to_disk folder, with "tokens" and "ner_tags" lists, or a CoNLL file of word and tag columns)`,
    );
  }
  throw new ArgsError(
    `task image-cls has no built-in data set: pass --data DIR (a folder per class of PNG/JPEG files), ` +
      `a datasets split (.parquet, .arrow or a save_to_disk folder) or a .jsonl file of pixel arrays`,
  );
}

/**
 * A decoder classifier pools each row at its last non-pad token, so it needs a pad id; when
 * config.json has none, use the tokenizer's padding id (its pad, else eos), as transformers
 * users set `pad_token_id = eos_token_id`. Returns true when it set one.
 */
export function ensurePadToken(config: HfConfig, task: TaskName, tokenizer: Tokenizer | null): boolean {
  if (task !== "seq-cls" || config.padTokenId !== null || !tokenizer) return false;
  config.padTokenId = tokenizer.padId;
  return true;
}

/** The config of a model directory, with a clear error when it is not one. */
export async function readModelConfig(dir: string): Promise<HfConfig> {
  try {
    return await loadHfConfig(join(dir, "config.json"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      // a relative path is looked up from the working directory: the embedded models/default too
      const where = isAbsolute(dir) ? "" : ` under ${Deno.cwd()}`;
      const missing = !(await pathExists(dir));
      throw new DataError(
        missing
          ? `${dir}: the folder does not exist${where}; give --model DIR`
          : `${dir}: not a model directory${where} (no config.json); give --model DIR`,
      );
    }
    if (e instanceof Deno.errors.NotADirectory) {
      throw new DataError(`${dir}: not a model directory (it is a file); give --model DIR`);
    }
    throw e;
  }
}
