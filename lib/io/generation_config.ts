/**
 * A model directory's generation_config.json: the end ids and sampling settings it gives.
 * @module
 */
import { join } from "node:path";
import { HfConfigError } from "./config_fields.ts";

/** What a model directory's generation_config.json says about generating (transformers' names). */
export interface GenerationConfig {
  /** `eos_token_id` (one id or a list): chat models end a turn with ids config.json may not list (Llama 3's <|eot_id|>). */
  eosTokenIds: number[];
  /** `do_sample`: sample (with the settings below) rather than take the most probable token. */
  doSample: boolean;
  /** `temperature`, when given. */
  temperature?: number;
  /** `top_k`, when given. */
  topK?: number;
  /** `top_p`, when given. */
  topP?: number;
  /** `min_p`, when given. */
  minP?: number;
  /** `repetition_penalty`, when given. */
  repetitionPenalty?: number;
  /** Why the file was not read, when it is there but is not JSON (the rest are then the defaults). */
  unreadable?: string;
}

/**
 * A model directory's generation_config.json; without the file, no end ids and greedy decoding.
 * A file that cannot be read as JSON is ignored as transformers ignores it (its from_pretrained
 * goes on with the model config's settings), with `unreadable` saying why.
 * @throws HfConfigError naming the file and the field for a field of the wrong kind.
 */
export async function loadGenerationConfig(dir: string): Promise<GenerationConfig> {
  const path = join(dir, "generation_config.json");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(path)) ?? {};
  } catch (e) {
    const unread = { eosTokenIds: [], doSample: false };
    if (e instanceof Deno.errors.NotFound) return unread;
    return { ...unread, unreadable: `${path}: cannot read: ${(e as Error).message}` };
  }
  const eos = json.eos_token_id ?? [];
  const ids = Array.isArray(eos) ? eos : [eos];
  if (!ids.every((id) => Number.isSafeInteger(id) && id >= 0)) {
    throw new HfConfigError(
      `${path}: "eos_token_id" must be a token id or a list of them, got ${JSON.stringify(eos)}`,
    );
  }
  const number = (key: string, ok: (v: number) => boolean, what: string): number | undefined => {
    const v = json[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !ok(v)) {
      throw new HfConfigError(`${path}: "${key}" must be ${what}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const config: GenerationConfig = { eosTokenIds: ids, doSample: json.do_sample === true };
  const temperature = number("temperature", (v) => v >= 0, "a number ≥ 0");
  const topK = number("top_k", (v) => Number.isInteger(v) && v >= 0, "an integer ≥ 0");
  const topP = number("top_p", (v) => v > 0 && v <= 1, "a number in (0, 1]");
  const minP = number("min_p", (v) => v >= 0 && v <= 1, "a number in [0, 1]");
  const repetitionPenalty = number("repetition_penalty", (v) => v > 0, "a number > 0");
  if (temperature !== undefined) config.temperature = temperature;
  if (topK !== undefined) config.topK = topK;
  if (topP !== undefined) config.topP = topP;
  if (minP !== undefined) config.minP = minP;
  if (repetitionPenalty !== undefined) config.repetitionPenalty = repetitionPenalty;
  return config;
}
