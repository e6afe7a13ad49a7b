/**
 * The initial model of `hartley pretrain`: its config.json (from `--family` and the size flags, or
 * `--config`) and the tokenizer files to copy beside it, checked against each other and `--seq-len`
 * before anything is written; and, for `--resume`, how the flags differ from the run's `init/`.
 * @module
 */
import { dirname, join } from "node:path";
import { parseHfConfig } from "../io/hf_config.ts";
import { fileInFolder, statOrNull } from "../io/paths.ts";
import { loadTokenizer, type SpecialTokens } from "../io/tokenizer.ts";
import { getFamily } from "../models/registry.ts";
import { writeRandomModel } from "../train/init.ts";
import { ArgsError } from "./args.ts";
import { taskOfConfig, withArticle } from "./task.ts";

/** The flags of `hartley pretrain` that define the initial model. */
export interface ModelFlags {
  family: string;
  config?: string;
  layers: number;
  hidden: number;
  heads: number;
  intermediate?: number;
  positions: number;
  dropout: number;
  tokenizer: string;
  seqLen: number;
}

/** What `init/` is made of. */
export interface InitModel {
  /** config.json's content. */
  json: Record<string, unknown>;
  /** The tokenizer files to copy into the model folder: their name there → their path. */
  files: Record<string, string>;
}

/**
 * The files `save_pretrained` writes beside tokenizer.json that shape its tokens or name its
 * special tokens and chat template, copied with it when present.
 */
const TOKENIZER_COMPANIONS = [
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];

/**
 * The initial model the flags describe, checked (a causal LM; the tokenizer's ids within its
 * vocab_size; --seq-len within its positions) without writing anything.
 */
export async function initModel(f: ModelFlags): Promise<InitModel> {
  const tokenizerFile = await jsonFileOf("tokenizer", f.tokenizer, "tokenizer.json");
  await readJson("tokenizer", tokenizerFile, "tokenizer.json"); // an error that names the flag
  // the files beside it are the ones loadTokenizer reads with it, and training reads from init/
  const files: Record<string, string> = { "tokenizer.json": tokenizerFile };
  for (const name of TOKENIZER_COMPANIONS) {
    const path = join(dirname(tokenizerFile), name);
    if ((await statOrNull(path))?.isFile) files[name] = path;
  }
  const tokenizer = await loadTokenizer(tokenizerFile);
  if (!f.config) {
    const json = familyConfig(f.family, {
      layers: f.layers,
      hidden: f.hidden,
      heads: f.heads,
      intermediate: f.intermediate ?? 4 * f.hidden,
      positions: f.positions,
      vocab: tokenizer.vocabSize,
      dropout: f.dropout,
      special: tokenizer.special,
    });
    if (f.seqLen > f.positions) {
      throw new ArgsError(
        `--seq-len ${f.seqLen} is more than --positions ${f.positions}: lower --seq-len or raise --positions`,
      );
    }
    return { json, files };
  }
  const configFile = await jsonFileOf("config", f.config, "config.json");
  const json = await readJson("config", configFile, "config.json");
  const config = parseHfConfig(json, configFile);
  const arch = config.architectures[0];
  if (taskOfConfig(config) !== "causal-lm" || !getFamily(config.modelType)?.architectures["causal-lm"]) {
    const what = arch
      ? `its ${arch} (${withArticle(config.modelType)} model)`
      : `it names no "architectures" and`;
    throw new ArgsError(
      `--config ${f.config}: ${what} is no causal LM; pretrain trains one: ` +
        `give the config.json of a GPT2LMHeadModel, LlamaForCausalLM, …`,
    );
  }
  const vocab = "vocabSize" in config ? config.vocabSize : 0;
  if (tokenizer.vocabSize > vocab) {
    throw new ArgsError(
      `--tokenizer ${f.tokenizer} produces ids up to ${tokenizer.vocabSize - 1}, more than the vocab_size ` +
        `${vocab} of --config ${f.config} takes: give a config with a vocab_size of at least ` +
        `${tokenizer.vocabSize}, or another --tokenizer`,
    );
  }
  // rotary positions extend past max_position_embeddings, but a model pretrained past them would
  // say it takes fewer tokens than it was trained on
  const positions = "maxPositions" in config ? config.maxPositions : Infinity;
  if (f.seqLen > positions) {
    throw new ArgsError(
      `--seq-len ${f.seqLen} is more than the ${positions} positions of --config ${f.config}: lower --seq-len`,
    );
  }
  return { json, files };
}

/** Write `init` as a model folder `dir` with weights randomly initialised from `seed`. */
export async function writeInitModel(dir: string, init: InitModel, seed: number): Promise<void> {
  await writeRandomModel(dir, init.json, null, seed);
  for (const [name, path] of Object.entries(init.files)) await Deno.copyFile(path, join(dir, name));
}

/**
 * How the initial model `init` (what the flags describe now) differs from the run's `initDir`,
 * each difference named by the flag that sets it, with the run's value and the one given now.
 */
export async function initChanges(init: InitModel, initDir: string, f: ModelFlags): Promise<string[]> {
  const changes: string[] = [];
  const differing: string[] = [];
  for (const name of ["tokenizer.json", ...TOKENIZER_COMPANIONS]) {
    const given = init.files[name] ? await Deno.readFile(init.files[name]) : null;
    const run = await readFileIfAny(join(initDir, name));
    if (!sameBytes(given, run)) differing.push(name);
  }
  if (differing.length > 0) {
    const files = `${differing.join(", ")} ${differing.length > 1 ? "differ" : "differs"}`;
    changes.push(`--tokenizer: ${f.tokenizer} is not the run's tokenizer (${files} from ${initDir}'s)`);
  }
  const saved = JSON.parse(await Deno.readTextFile(join(initDir, "config.json")));
  const now = init.json;
  const flagOf = (key: string) => f.config ? "config" : KEY_FLAGS[key] ?? "config";
  // a size flag shows its values as given; other keys (--config's, the tokenizer's) are named
  const sized = (key: string) => !f.config && SIZE_KEYS.has(key);
  const change = (key: string): string => {
    const show = (x: unknown) => x === undefined ? "unset" : sized(key) ? String(x) : JSON.stringify(x);
    return `--${flagOf(key)}: ${sized(key) ? "" : `${key} `}${show(saved[key])} → ${show(now[key])}`;
  };
  // with the family, every size differs: name the family alone
  if (saved.model_type !== now.model_type) return [...changes, change("model_type")];
  const named = new Set<string>();
  for (const key of new Set([...Object.keys(saved), ...Object.keys(now)])) {
    if (JSON.stringify(saved[key]) === JSON.stringify(now[key])) continue;
    // the tokenizer's size and ids follow its files, compared above
    if (flagOf(key) === "tokenizer") continue;
    // one line a size flag (--heads sets two keys, --dropout three)
    const id = sized(key) ? flagOf(key) : key;
    if (named.has(id)) continue;
    named.add(id);
    changes.push(change(key));
  }
  return changes;
}

/** The bytes of `path`, null when there is no such file. */
async function readFileIfAny(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Whether two files' bytes (null: no file) are the same. */
function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The flag that sets each config.json key {@link familyConfig} writes. */
const KEY_FLAGS: Record<string, string> = {
  model_type: "family",
  architectures: "family",
  n_layer: "layers",
  num_hidden_layers: "layers",
  n_embd: "hidden",
  hidden_size: "hidden",
  n_head: "heads",
  num_attention_heads: "heads",
  num_key_value_heads: "heads",
  n_inner: "intermediate",
  intermediate_size: "intermediate",
  n_positions: "positions",
  max_position_embeddings: "positions",
  attn_pdrop: "dropout",
  embd_pdrop: "dropout",
  resid_pdrop: "dropout",
  attention_dropout: "dropout",
  vocab_size: "tokenizer",
  bos_token_id: "tokenizer",
  eos_token_id: "tokenizer",
  pad_token_id: "tokenizer",
};

/** The keys whose value is that of their size flag. */
const SIZE_KEYS = new Set(
  Object.keys(KEY_FLAGS).filter((k) => KEY_FLAGS[k] !== "tokenizer" && k !== "architectures"),
);

interface Sizes {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  positions: number;
  vocab: number;
  dropout: number;
  /** The tokenizer's special tokens: bos, eos and pad are the config's (null where it has none). */
  special: Pick<SpecialTokens, "bos" | "eos" | "pad">;
}

/** A config.json for a fresh model of `family`. */
function familyConfig(family: string, s: Sizes): Record<string, unknown> {
  const ids = { bos_token_id: s.special.bos, eos_token_id: s.special.eos, pad_token_id: s.special.pad };
  if (family === "gpt2") {
    return {
      architectures: ["GPT2LMHeadModel"],
      model_type: "gpt2",
      activation_function: "gelu_new",
      n_layer: s.layers,
      n_embd: s.hidden,
      n_head: s.heads,
      n_inner: s.intermediate,
      n_positions: s.positions,
      vocab_size: s.vocab,
      attn_pdrop: s.dropout,
      embd_pdrop: s.dropout,
      resid_pdrop: s.dropout,
      layer_norm_epsilon: 1e-5,
      initializer_range: 0.02,
      scale_attn_weights: true,
      tie_word_embeddings: true,
      ...ids,
      dtype: "float32",
    };
  }
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.heads,
    max_position_embeddings: s.positions,
    vocab_size: s.vocab,
    hidden_act: "silu",
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    // LlamaConfig's one dropout, on the attention probabilities
    attention_dropout: s.dropout,
    initializer_range: 0.02,
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    ...ids,
    dtype: "float32",
  };
}

/**
 * The file of flag `--${flag}`: `path`, or the `name` in it when it is a folder. A file that is not
 * there, or a folder without `name`, is an error (exit 1, as any file that cannot be read).
 */
function jsonFileOf(flag: string, path: string, name: string): Promise<string> {
  return fileInFolder(
    path,
    name,
    flag,
    () => new Error(`--${flag} ${path}: a folder without ${name}; give a ${name} or a folder holding one`),
  );
}

/** The JSON object in `file`, the ${name} of flag `--${flag}`. */
async function readJson(flag: string, file: string, name: string): Promise<Record<string, unknown>> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    throw new Error(`--${flag} ${file}: not JSON; it must be a ${name}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`--${flag} ${file}: not a JSON object; it must be a ${name}`);
  }
  return json as Record<string, unknown>;
}
