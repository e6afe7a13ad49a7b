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
import { type HfConfig, loadHfConfig } from "../io/hf_config.ts";
import { openCheckpoint, type TensorSource } from "../io/safetensors.ts";
import { checkTokenizerFits, loadTokenizer, type Tokenizer } from "../io/tokenizer.ts";
import { loadWeights, type WeightDtype } from "../nn/load.ts";
import "./families.ts";
import type { Model, ModelTask } from "./model.ts";
import { type Family, getFamily, registeredFamilies } from "./registry.ts";
import { modelShapes } from "./shapes.ts";

export { type BuildContext, type Family, registeredFamilies, registerFamily } from "./registry.ts";

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
  /** Storage of the frozen matrices: "f32" (default) or "f16" (needs `gpu.f16`). */
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
  /**
   * Read the weights from this source instead of the directory's checkpoint (e.g. random
   * weights generated on demand, to benchmark a model's shape without downloading it).
   */
  source?: TensorSource;
}

/**
 * Load the model in `dir` onto `gpu`, in eval mode. Errors name the file (and tensor) at
 * fault: a missing directory, config.json or checkpoint; an unknown `model_type`; a tensor of
 * the wrong shape or dtype; a truncated safetensors file.
 */
export async function loadModel(gpu: Gpu, dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  await expectDirectory(dir);
  const configPath = join(dir, "config.json");
  const config = await loadHfConfig(configPath).catch((e) => {
    throw e instanceof Deno.errors.NotFound
      ? new Error(`${configPath}: not found (a Hugging Face model directory needs config.json)`)
      : e;
  });
  const family = familyOf(config);
  const task = opts.task ?? taskOf(family, config);
  const architecture = family.architectures[task];
  if (!architecture) {
    throw new Error(
      `${config.path}: task "${task}" is not supported for model_type "${config.modelType}" ` +
        `(supported: ${Object.keys(family.architectures).join(", ")})`,
    );
  }
  const shapes = modelShapes(config, { architecture, numLabels: opts.numLabels });
  const source = opts.source ?? await openCheckpoint(dir);
  const dtype = opts.dtype ?? "f32";
  const initStd = typeof config.raw.initializer_range === "number" ? config.raw.initializer_range : 0.02;
  const weights = await loadWeights(gpu, source, shapes, {
    dtype,
    // a new head: the checkpoint's is taken for another task's (see checkCheckpoint), so not read
    sourceArchitecture: opts.newHead ? `${architecture} (head dropped)` : config.architectures[0],
    seed: opts.seed,
    initStd,
    onProgress: opts.onProgress,
  });
  try {
    return family.build({ gpu, dir, config, task, shapes, weights, dtype });
  } catch (e) {
    for (const t of weights.params.values()) t.dispose();
    throw e;
  }
}

/**
 * The tokenizer of a model with config `config`: `path` (a tokenizer.json or a folder holding
 * one; default the tokenizer.json beside config.json), checked to produce only ids below the
 * model's vocab_size (the error names both files). A model directory without one is an error
 * naming it.
 */
export async function loadModelTokenizer(config: HfConfig, path?: string): Promise<Tokenizer> {
  const dir = dirname(config.path);
  const tokenizer = await loadTokenizer(path ?? join(dir, "tokenizer.json"), config).catch((e) => {
    throw path === undefined && e instanceof Deno.errors.NotFound
      ? new Error(`model directory ${dir} has no tokenizer.json (a text model needs one beside config.json)`)
      : e;
  });
  checkTokenizerFits(tokenizer, config);
  return tokenizer;
}

function familyOf(config: HfConfig): Family {
  const family = getFamily(config.modelType);
  if (!family) {
    throw new Error(
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
  throw new Error(
    `${config.path}: architecture ${JSON.stringify(arch ?? null)} names no task; pass task ` +
      `(${entries.map(([t, a]) => `${t} = ${a}`).join(", ")})`,
  );
}

async function expectDirectory(dir: string): Promise<void> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${dir}: model directory not found`);
    throw e;
  }
  if (!stat.isDirectory) throw new Error(`${dir}: not a directory (expected a Hugging Face model directory)`);
}
