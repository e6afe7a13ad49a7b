/**
 * Loading a model directory with an optional adapter for `eval`, `merge`, `inspect`, `predict`
 * and `chat`: the task comes from the flag, else the adapter's task_type, else the model's
 * config; a classification head gets the label count of the adapter's saved head, else of the
 * config. What predict and chat generate with is in generation.ts.
 * @module
 */
import type { WeightDtype } from "../nn/load.ts";
import { resolve } from "node:path";
import type { Gpu } from "../gpu/mod.ts";
import type { HfConfig } from "../io/hf_config.ts";
import { openSafetensors } from "../io/safetensors.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import { loadModel, loadModelTokenizer, type LoadNotes } from "../models/load.ts";
import type { Model } from "../models/model.ts";
import { type AdapterConfig, loadAdapterConfig, taskOfPeftType } from "../peft/config.ts";
import { loadAdapterInto, type PeftModel } from "../peft/apply.ts";
import { adapterWeightsPath, PEFT_KEY_PREFIX } from "../peft/files.ts";
import type { TaskName } from "../train/tasks.ts";
import { ArgsError, checkShipped, shippedPath } from "./args.ts";
import { loadingProgress, loadNoteLines } from "./loading.ts";
import { checkTaskFits, ensurePadToken, readModelConfig, taskOfConfig, withArticle } from "./task.ts";

/** What {@link loadForUse} loaded. */
export interface Loaded {
  /** The model directory loaded (see {@link LoadForUseOptions.modelGiven}). */
  modelDir: string;
  model: Model;
  peft: PeftModel | null;
  config: HfConfig;
  adapterConfig: AdapterConfig | null;
  task: TaskName;
  tokenizer: Tokenizer | null;
  /** Label count of the classification head. */
  numLabels?: number;
}

/** Options of {@link loadForUse}. */
export interface LoadForUseOptions {
  model: string;
  /**
   * False when `model` is only the default (--model not given): with an adapter, the base it names
   * (base_model_name_or_path) is loaded instead when that is a folder here; else the adapter must
   * have been trained on `model`. True by default.
   */
  modelGiven?: boolean;
  adapter?: string;
  task?: TaskName;
  /** The command has no --task flag (chat): errors do not suggest one. */
  taskFixed?: boolean;
  dtype?: WeightDtype;
  /**
   * Refuse a task head that neither the checkpoint nor the adapter holds (loadModel would
   * initialise it at random): evaluating, merging or predicting with it means nothing.
   */
  needHead?: boolean;
  /** No loading progress display. */
  quiet?: boolean;
}

/** What {@link loadForUse} loads, found without reading the weights (flags can be checked against it first). */
export interface UsePlan {
  modelDir: string;
  config: HfConfig;
  adapterConfig: AdapterConfig | null;
  task: TaskName;
  /** Label count of the classification head. */
  numLabels?: number;
}

/**
 * The model directory, config, task and head size {@link loadForUse} loads for `o`; a task the
 * adapter was not trained for, or that the model's family has no head for, is refused.
 */
export async function planUse(o: LoadForUseOptions): Promise<UsePlan> {
  const adapterConfig = o.adapter ? await loadAdapterConfigOf(o.adapter) : null;
  const modelDir = await modelDirOf(o, adapterConfig);
  checkShipped("model", modelDir, "DIR");
  const config = await readModelConfig(modelDir);
  const adapterTask = adapterConfig ? taskOfPeftType(adapterConfig, config.modelType) : null;
  if (o.task && adapterTask && o.task !== adapterTask) {
    const trained = `${o.adapter} was trained for ${adapterTask} (its task_type ${adapterConfig!.taskType})`;
    throw new ArgsError(
      o.taskFixed ? `${trained}, not ${o.task}` : `--task ${o.task} does not match: ${trained}`,
    );
  }
  const task = o.task ?? adapterTask ?? taskOfConfig(config) ?? "causal-lm";
  checkTaskFits(task, config, modelDir, o.taskFixed ? "command" : o.task ? "flag" : "default");
  const numLabels = task === "causal-lm"
    ? undefined
    : (o.adapter ? await headLabelsOf(o.adapter) : undefined) ??
      (taskOfConfig(config) === task ? config.labels.length : undefined);
  return { modelDir, config, adapterConfig, task, numLabels };
}

/**
 * Load a model (and adapter) for evaluation, merging or inspection: what `plan` says ({@link planUse}
 * of `o` when not given).
 */
export async function loadForUse(gpu: Gpu, o: LoadForUseOptions, plan?: UsePlan): Promise<Loaded> {
  const { modelDir, config, adapterConfig, task, numLabels } = plan ?? await planUse(o);
  const tokenizer = config.modelType === "vit" ? null : await loadModelTokenizer(config);
  let notes: LoadNotes | undefined;
  const model = await loadModel(gpu, modelDir, {
    task,
    numLabels,
    dtype: o.dtype,
    onProgress: loadingProgress(o.quiet),
    onLoaded: (n) => notes = n,
  });
  ensurePadToken(model.config, task, tokenizer);
  try {
    const peft = o.adapter ? await loadAdapterInto(model, o.adapter) : null;
    // the class names the adapter's head was trained with name its outputs (and map the data's labels)
    const names = peft?.labelNames;
    if (names && names.length === numLabels) config.labels = model.config.labels = [...names];
    const random = model.initialised.find((key) => !peft?.saved.has(key));
    if (o.needHead && random) {
      // a head of another label count, as transformers says it (its from_pretrained refuses one)
      const resized = notes?.mismatched.find((m) => m.key === random);
      if (resized) {
        throw new ArgsError(
          `${modelDir}: size mismatch for ${random}: [${resized.stored}] in the checkpoint, ` +
            `[${resized.expected}] for ${
              withArticle(task)
            } head of ${numLabels} labels: it would be random; ` +
            `make config.json's id2label (or num_labels) count the labels of the checkpoint's head` +
            (o.adapter
              ? ` (the adapter ${o.adapter} holds none)`
              : `, or give an adapter trained for ${numLabels} labels`),
        );
      }
      throw new ArgsError(
        `${modelDir} has no ${task} head ("${random}" is not in its checkpoint)` +
          (o.adapter ? ` and the adapter ${o.adapter} does not hold one` : "") +
          `: it would be random; give an adapter or a model trained for ${task}` +
          (o.taskFixed ? "" : ", or another --task"),
      );
    }
    for (const line of notes ? loadNoteLines(notes, new Set(peft?.saved.keys())) : []) console.error(line);
    return { modelDir, model, peft, config, adapterConfig, task, tokenizer, numLabels };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** The model directory {@link loadForUse} loads: --model, or the adapter's base when --model is left out. */
async function modelDirOf(o: LoadForUseOptions, adapter: AdapterConfig | null): Promise<string> {
  const base = adapter?.baseModelNameOrPath;
  if (o.modelGiven !== false || !adapter) return o.model;
  if (!base) {
    throw new ArgsError(
      `${o.adapter} names no base model (its base_model_name_or_path is empty): pass --model DIR`,
    );
  }
  if (resolve(base) === resolve(o.model)) return o.model;
  const isDir = await Deno.stat(base).then((s) => s.isDirectory).catch(() => false);
  // a run made in the checkout's root records the shipped default model as "models/default" (or
  // "./models/default/", …): the path from the code's root
  if (!isDir && resolve(shippedPath(base)) === resolve(o.model)) return o.model;
  if (!isDir) {
    throw new ArgsError(
      `${o.adapter} was trained on ${base} (its base_model_name_or_path), which is not a folder here: ` +
        `pass --model DIR`,
    );
  }
  console.error(`model ${base} (the adapter's base_model_name_or_path)`);
  return base;
}

async function loadAdapterConfigOf(dir: string): Promise<AdapterConfig> {
  // loadAdapterConfig reads a file as the adapter_config.json itself: --adapter names a folder
  if ((await Deno.stat(dir).catch(() => null))?.isFile) {
    throw new Error(
      `${dir}: not an adapter directory (it is a file); give --adapter DIR, the folder of adapter_config.json`,
    );
  }
  try {
    return await loadAdapterConfig(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${dir}: not an adapter directory (no adapter_config.json)`);
    }
    throw e;
  }
}

/**
 * Rows of the classifier weight saved with an adapter (its label count), if any.
 * @throws AdapterFileError when `dir` has no weights file (naming an adapter_model.bin found instead).
 */
async function headLabelsOf(dir: string): Promise<number | undefined> {
  const file = await openSafetensors(await adapterWeightsPath(dir));
  const heads = [/\.?score\.weight$/, /classifier\.out_proj\.weight$/, /classifier\.weight$/];
  for (const re of heads) {
    const key = file.names.find((k) => k.startsWith(PEFT_KEY_PREFIX) && re.test(k));
    if (key) return file.info(key).shape[0];
  }
  return undefined;
}
