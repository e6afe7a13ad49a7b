/**
 * Load a Hugging Face model directory (config.json, model.safetensors or a sharded index,
 * tokenizer.json) into a {@link Model} of its family.
 *
 * ## Registry contract (for family authors)
 * - A family module (e.g. `lib/models/bert.ts`) exports a {@link Family} object:
 *   `{ architectures: { "seq-cls": "BertForSequenceClassification", base: "BertModel" }, build(ctx) }`.
 *   `architectures` maps each supported task to a class of `SUPPORTED_ARCHITECTURES` in
 *   shapes.ts; `build` gets a {@link BuildContext} (config, task, the shapes of that
 *   architecture, the loaded weights keyed as in those shapes) and returns a Model synchronously.
 * - Register it in `lib/models/families.ts` (one `registerFamily("<model_type>", family)` line
 *   per config.json `model_type`; one family object may serve several, e.g. bert and roberta).
 *   Family modules do not import load.ts or families.ts (no import cycles); they build on
 *   lib/nn/ (Linear.from for every linear layer, LayerNorm/RmsNorm, Embedding,
 *   multiHeadAttention, paddingMask, causalLmLoss/classificationLoss, lastTokenPositions).
 * - Other code may call {@link registerFamily} at run time to add or replace a family.
 * - loadModel does the rest: config parsing, task → architecture, shape and dtype checks, f16
 *   storage of frozen matrices, initialisation of a missing head (seeded), error messages.
 * @module
 */
import { dirname, join } from "node:path";
import type { Gpu } from "../gpu/mod.ts";
import { loadGenerationConfig } from "../io/generation_config.ts";
import { HfConfigError } from "../io/config_fields.ts";
import { type HfConfig, loadHfConfig } from "../io/hf_config.ts";
import { openCheckpoint, type TensorSource } from "../io/safetensors.ts";
import { checkTokenizerFits, loadTokenizer, type Tokenizer } from "../io/tokenizer.ts";
import { pathExists } from "../io/paths.ts";
import { checkpointKey, type LoadedWeights, loadWeights, type WeightDtype } from "../nn/load.ts";
import "./families.ts";
import type { Model, ModelTask } from "./model.ts";
import { type Family, getFamily, registeredFamilies } from "./registry.ts";
import { checkCheckpoint, type CheckpointMatch, type ModelShapes, modelShapes } from "./shapes.ts";

export { type BuildContext, type Family, registeredFamilies, registerFamily } from "./registry.ts";

/**
 * A model directory that cannot be read as one: missing, not a directory, or without a file it
 * needs (config.json for {@link loadModel}, tokenizer.json for {@link loadModelTokenizer}).
 * A config.json that is malformed or names a model or task not supported is an {@link HfConfigError}.
 */
export class ModelDirError extends Error {
  /** Always "ModelDirError". */
  override name = "ModelDirError";
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** The head to build; default: the one of config.json `architectures[0]`. */
  task?: ModelTask;
  /**
   * Labels of a classification head (default: the config's id2label / num_labels). A count the
   * checkpoint's head does not have starts the head's mismatched tensors new and keeps the others
   * (a RoBERTa head's dense layer), as transformers' `ignore_mismatched_sizes`; `newHead` starts all
   * of it new.
   */
  numLabels?: number;
  /**
   * Storage of the frozen matrices: "f32" (default), "f16" (needs `gpu.f16`), or the blocks' linear
   * layers quantized to 8 or 4 bits ("q8", "q4"; the embedding tables and LM output layer then q8).
   */
  dtype?: WeightDtype;
  /** Seed of a new (missing) head's initialisation (default 0). */
  seed?: number;
  /**
   * Start the task head new (initialised as a missing one), though the checkpoint holds one that
   * fits (`train --new-head`); the backbone, a BERT pooler included, is read as always.
   */
  newHead?: boolean;
  /** Told the bytes of the checkpoint read so far, and in all (e.g. for a progress bar). */
  onProgress?: (done: number, total: number) => void;
  /** Told, once the weights are read, what was read otherwise than as stored (see {@link LoadNotes}). */
  onLoaded?: (notes: LoadNotes) => void;
  /**
   * Read the weights from this source instead of the directory's checkpoint (e.g. random
   * weights generated on demand, to benchmark a model's shape without downloading it).
   */
  source?: TensorSource;
}

/**
 * What loading read otherwise than one checkpoint tensor per parameter, as transformers logs it:
 * keys are the model's parameters' (see `ModelShapes`), except `unused` and `renamed`'s, the checkpoint's.
 */
export interface LoadNotes {
  /** Parameters initialised new (a new head), those of `mismatched` included. */
  initialised: string[];
  /** Parameters whose checkpoint tensor has another shape (another label count), so initialised new. */
  mismatched: { key: string; stored: number[]; expected: number[] }[];
  /**
   * Checkpoint tensors no parameter reads (another head's), leaving out buffers transformers does not
   * warn of (attention masks, position ids, rotary frequencies) and a tied output layer's copy.
   */
  unused: string[];
  /** Checkpoint tensors read under transformers' current name: stored name → name read as. */
  renamed: [string, string][];
  /** Why a causal LM's generation_config.json was ignored (its end ids unknown), when it was. */
  generationConfigIgnored?: string;
}

/** Buffers a checkpoint may hold that are no parameters (transformers ignores them unannounced). */
const BUFFERS = /(^|\.)(attn\.bias|attn\.masked_bias|position_ids|rotary_emb\.inv_freq)$/;

/**
 * Load the model in `dir` onto `gpu`, in eval mode. The checkpoint's tensors are read under the
 * names transformers loads them with (a TensorFlow-converted BERT's `LayerNorm.gamma` as
 * `LayerNorm.weight`; see `openCheckpoint`). Errors name the file (and tensor) at fault: a missing
 * directory, config.json or checkpoint; an unknown `model_type`; a tensor of the wrong shape or
 * dtype; a truncated safetensors file.
 * @throws {@link ModelDirError} when `dir` is missing, no directory, or has no config.json;
 *   {@link HfConfigError} when config.json is malformed or its model_type has no head for the task.
 */
export async function loadModel(gpu: Gpu, dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  await expectDirectory(dir);
  const configPath = join(dir, "config.json");
  const config = await loadHfConfig(configPath).catch((e) => {
    throw e instanceof Deno.errors.NotFound
      ? new ModelDirError(`${configPath}: not found (a Hugging Face model directory needs config.json)`)
      : e;
  });
  const family = familyOf(config);
  const task = opts.task ?? taskOf(family, config);
  const architecture = family.architectures[task];
  if (!architecture) {
    throw new HfConfigError(
      `${config.path}: task "${task}" is not supported for model_type "${config.modelType}" ` +
        `(supported: ${Object.keys(family.architectures).join(", ")})`,
    );
  }
  // the end ids a chat model stops a turn at (once, here: generate reads no files)
  const generation = task === "causal-lm" ? await loadGenerationConfig(dir) : undefined;
  if (generation) config.generationEosTokenIds = generation.eosTokenIds;
  const shapes = modelShapes(config, { architecture, numLabels: opts.numLabels });
  const source = opts.source ?? await openCheckpoint(dir);
  const dtype = opts.dtype ?? "f32";
  const initStd = typeof config.raw.initializer_range === "number" ? config.raw.initializer_range : 0.02;
  // a new head: the checkpoint's is taken for another task's (see checkCheckpoint), so not read
  const sourceArchitecture = opts.newHead ? `${architecture} (head dropped)` : config.architectures[0];
  const weights = await loadWeights(gpu, source, shapes, {
    dtype,
    sourceArchitecture,
    seed: opts.seed,
    initStd,
    onProgress: opts.onProgress,
  });
  const notes = loadNotes(shapes, weights, checkCheckpoint(shapes, source, sourceArchitecture));
  const ignored = generation?.unreadable;
  opts.onLoaded?.(ignored ? { ...notes, generationConfigIgnored: ignored } : notes);
  try {
    return family.build({ gpu, dir, config, task, shapes, weights, dtype });
  } catch (e) {
    for (const t of weights.params.values()) t.dispose();
    throw e;
  }
}

/** {@link LoadNotes} of `weights`, read as `match` says. */
function loadNotes(shapes: ModelShapes, weights: LoadedWeights, match: CheckpointMatch): LoadNotes {
  const modelKey = new Map(
    shapes.params.map((p) => [checkpointKey(p.key, shapes.basePrefix, weights.prefix), p.key]),
  );
  const tied = new Set(
    shapes.params.filter((p) => p.tiedTo).map((p) => checkpointKey(p.key, shapes.basePrefix, weights.prefix)),
  );
  return {
    initialised: [...weights.initialised],
    mismatched: match.mismatched.map((m) => ({ ...m, key: modelKey.get(m.key) ?? m.key })),
    unused: weights.unexpected.filter((n) => !BUFFERS.test(n) && !tied.has(n)),
    renamed: [...weights.source.renamed ?? []].map(([name, stored]) => [stored, name]),
  };
}

/**
 * The tokenizer of a model with config `config`: `path` (a tokenizer.json or a folder holding
 * one; default the tokenizer.json beside config.json), checked to produce only ids below the
 * model's vocab_size (the error names both files). A model directory without one is a
 * {@link ModelDirError} naming it.
 */
export async function loadModelTokenizer(config: HfConfig, path?: string): Promise<Tokenizer> {
  const dir = dirname(config.path);
  const tokenizer = await loadTokenizer(path ?? join(dir, "tokenizer.json"), config).catch(async (e) => {
    if (path !== undefined || !(e instanceof Deno.errors.NotFound)) throw e;
    throw new ModelDirError(
      `model directory ${dir} has no tokenizer.json (a text model needs one beside config.json)` +
        await slowTokenizerHint(dir),
    );
  });
  checkTokenizerFits(tokenizer, config);
  return tokenizer;
}

/** Files of tokenizers that transformers converts into a tokenizer.json (its "slow" tokenizers' files). */
const SLOW_TOKENIZER_FILES = [
  "vocab.txt",
  "vocab.json",
  "merges.txt",
  "tokenizer.model",
  "spiece.model",
  "sentencepiece.bpe.model",
];

/** For the model folder `dir` without tokenizer.json: the tokenizer files it has and how to convert them, or "". */
async function slowTokenizerHint(dir: string): Promise<string> {
  const found = [];
  for (const f of SLOW_TOKENIZER_FILES) if (await pathExists(join(dir, f))) found.push(f);
  if (found.length === 0) return "";
  const files = found.join(", ");
  return `; it has ${files}, which transformers converts: ` +
    `AutoTokenizer.from_pretrained(dir).save_pretrained(dir) writes tokenizer.json`;
}

function familyOf(config: HfConfig): Family {
  const family = getFamily(config.modelType);
  if (!family) {
    throw new HfConfigError(
      `${config.path}: no model family is registered for model_type "${config.modelType}" ` +
        `(registered: ${registeredFamilies().join(", ")})`,
    );
  }
  return family;
}

/** The task of `config.architectures[0]`; a bare or unknown architecture needs an explicit task. */
function taskOf(family: Family, config: HfConfig): ModelTask {
  const arch = config.architectures[0];
  const entries = Object.entries(family.architectures) as [ModelTask, string][];
  const hit = entries.find(([, a]) => a === arch);
  if (hit) return hit[0];
  if (arch === undefined && family.architectures.base) return "base";
  throw new HfConfigError(
    `${config.path}: architecture ${JSON.stringify(arch ?? null)} names no task; pass task ` +
      `(${entries.map(([t, a]) => `${t} = ${a}`).join(", ")})`,
  );
}

async function expectDirectory(dir: string): Promise<void> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new ModelDirError(`${dir}: model directory not found`);
    throw e;
  }
  if (!stat.isDirectory) {
    throw new ModelDirError(`${dir}: not a directory (expected a Hugging Face model directory)`);
  }
}
