/**
 * What predict and chat generate with: the chat template, the key/value cache dtype and the
 * sampling settings (flags over generation_config.json).
 * @module
 */
import { join } from "node:path";
import { type ChatTemplate, loadChatTemplate } from "../io/chat_template.ts";
import { loadGenerationConfig } from "../io/generation_config.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import type { KvCacheDtype } from "../models/kv_cache.ts";
import type { WeightDtype } from "../nn/load.ts";
import { ArgsError } from "./args.ts";

/**
 * The chat template of the model directory `dir` (special tokens as `tokenizer` resolved them
 * where the files do not name them); an ArgsError when it has none. Without `tokenizer` (before
 * the model loads), it tells whether the template is there and parses, but renders those special
 * tokens as undefined.
 */
export async function chatTemplateOf(
  dir: string,
  variables: Record<string, unknown> = {},
  tokenizer?: Tokenizer,
): Promise<ChatTemplate> {
  const template = await loadChatTemplate(dir, variables, tokenizer);
  if (!template) {
    throw new ArgsError(
      `${dir} has no chat template (tokenizer_config.json "chat_template", or chat_template.jinja)`,
    );
  }
  return template;
}

/** `--kv-cache` as a cache dtype: `auto` is f16 when the frozen weights are not f32 (see the flag). */
export function cacheDtypeOf(flag: string, weights: WeightDtype): KvCacheDtype {
  return flag === "auto" ? (weights === "f32" ? "f32" : "f16") : flag as KvCacheDtype;
}

/** The sampling flags of predict and chat (undefined: not given). */
export interface SamplingFlags {
  temperature?: number;
  "top-k"?: number;
  "top-p"?: number;
  "min-p"?: number;
  "repetition-penalty"?: number;
}

/** How predict and chat pick tokens, and where it came from. */
export interface Sampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  /**
   * Lines naming what generation_config.json set (flags not given) and the sampling flags greedy
   * decoding leaves unused, or null when there is nothing to say.
   */
  note: string | null;
}

/**
 * The flags, else what `dir`'s generation_config.json says, as transformers' generate reads it:
 * sampling with its `do_sample` (or a --temperature above 0), then its temperature, top_k, top_p
 * and min_p, or transformers' own 1, 50, 1 and none where it is silent; greedy decoding without; its
 * repetition_penalty either way. Else greedy, no penalty.
 */
export async function samplingOf(dir: string, flags: SamplingFlags): Promise<Sampling> {
  const g = await loadGenerationConfig(dir);
  const fromFile: string[] = [], fromDefaults: string[] = [];
  // the flag, else the file's value, else (where given) transformers' default, else `none`
  const pick = (
    flag: number | undefined,
    file: number | undefined,
    label: string,
    none: number,
    def?: number,
  ) => {
    if (flag !== undefined) return flag;
    const value = file ?? def;
    if (value === undefined) return none;
    if (value !== none) (file !== undefined ? fromFile : fromDefaults).push(`${label} ${value}`);
    return value;
  };
  const temperature = pick(
    flags.temperature,
    g.doSample ? g.temperature : undefined,
    "temperature",
    0,
    g.doSample ? 1 : undefined,
  );
  const samples = g.doSample || temperature > 0;
  const sampling = {
    temperature,
    topK: pick(flags["top-k"], samples ? g.topK : undefined, "top-k", 0, samples ? 50 : undefined),
    topP: pick(flags["top-p"], samples ? g.topP : undefined, "top-p", 1),
    minP: pick(flags["min-p"], samples ? g.minP : undefined, "min-p", 0),
    repetitionPenalty: pick(flags["repetition-penalty"], g.repetitionPenalty, "repetition penalty", 1),
  };
  const parts = [
    ...(fromFile.length > 0 ? [`${join(dir, "generation_config.json")}: ${fromFile.join(", ")}`] : []),
    ...(fromDefaults.length > 0 ? [`transformers' defaults: ${fromDefaults.join(", ")}`] : []),
  ];
  const greedyHint = flags.temperature === undefined && samples ? "; --temperature 0 is greedy" : "";
  // sampling flags given to greedy decoding change nothing: say so
  const unused = temperature > 0
    ? []
    : (["top-k", "top-p", "min-p"] as const).filter((f) => flags[f] !== undefined);
  const notes = [
    ...(parts.length > 0
      ? [`${parts.join("; ")} (the flags override ${parts.length > 1 ? "them" : "it"}${greedyHint})`]
      : []),
    ...(unused.length > 0
      ? [
        `${unused.map((f) => `--${f}`).join(", ")} appl${unused.length > 1 ? "y" : "ies"} when sampling: ` +
        "give --temperature above 0",
      ]
      : []),
  ];
  return { ...sampling, note: notes.length > 0 ? notes.join("\n") : null };
}
