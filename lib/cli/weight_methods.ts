/**
 * The methods of `train` that train the model's own weights rather than an adapter: `full` (every
 * parameter) and `head` (the task head alone, a linear probe). They choose the trained tensors,
 * group them for the trainer, restore `head`'s from a checkpoint on resume and write them as a
 * model directory.
 * @module
 */
import { join } from "node:path";
import { openCheckpoint } from "../io/safetensors.ts";
import type { Model } from "../models/model.ts";
import { writeMergedModel } from "../peft/merge.ts";
import { shapesOfModel } from "../peft/model_shapes.ts";
import type { Tensor } from "../tensor/mod.ts";
import { headGroups } from "../train/groups.ts";
import type { NamedParam, ParamGroupSpec } from "../train/trainer.ts";
import type { MethodOptions, PreparedMethod } from "./method.ts";

/**
 * `full` or `head` on `model`. With `resumeDir` (a checkpoint folder) `head`'s F32 tensors come
 * from its `model/` (a full model is loaded from there by the caller).
 */
export async function prepareWeightMethod(
  model: Model,
  o: MethodOptions,
  resumeDir: string | undefined,
): Promise<PreparedMethod> {
  const shapes = shapesOfModel(model);
  const heads = shapes.head.filter((h) => h !== shapes.outputLayer);
  const chosen = chooseTrained(model, o, heads);
  checkTrained(model, o, chosen, shapes.architecture);
  if (resumeDir && o.method === "head") await restoreTensors(model, chosen, join(resumeDir, "model"));
  const named = [...chosen].map(([name, tensor]) => ({ name, tensor }));
  return {
    peft: null,
    groups: weightGroups(named, o, heads),
    trainable: named.reduce((s, p) => s + p.tensor.size, 0),
    writeWeights: (dir) => writeTrained(model, o, chosen, join(dir, "model"), "F32"),
    saveFinal: async (outDir) => {
      const dir = join(outDir, "model");
      await writeTrained(model, o, chosen, dir);
      return dir;
    },
    adapterConfig: null,
  };
}

/** Whether `key` is in one of `modules` (the module itself or one of its parts). */
function within(modules: readonly string[], key: string): boolean {
  return modules.some((m) => key === m || key.startsWith(m + "."));
}

/**
 * The parameters `o.method` trains, by key: every one for `full`; for `head` those of the task
 * head (`heads`) and of `o.headModules`. Marks the f32 tensors as trained or frozen.
 */
function chooseTrained(model: Model, o: MethodOptions, heads: readonly string[]): Map<string, Tensor> {
  // --method head trains what an adapter saves beside the head too (a pooler the checkpoint lacks
  // would otherwise stay random, and be missing from the saved model)
  const headModules = o.headModules ?? [];
  const chosen = new Map<string, Tensor>();
  for (const [key, t] of model.parameters) {
    const train = o.method === "full" || within(heads, key) || within(headModules, key);
    if (train && t.dtype !== "f32") {
      throw new Error(`parameter "${key}" is stored as ${t.dtype}: method ${o.method} needs --dtype f32`);
    }
    if (t.dtype === "f32") t.requiresGrad = train;
    if (train) chosen.set(key, t);
  }
  return chosen;
}

/** Refuse an empty choice, and a parameter new to the checkpoint that it leaves untrained. */
function checkTrained(
  model: Model,
  o: MethodOptions,
  chosen: ReadonlyMap<string, Tensor>,
  architecture: string,
): void {
  if (chosen.size === 0) {
    throw new Error(`method ${o.method}: the model (${architecture}) has no task head to train`);
  }
  const untrained = model.initialised.find((key) => model.parameters.has(key) && !chosen.has(key));
  if (untrained) {
    throw new Error(
      `method ${o.method}: "${untrained}" is new (the checkpoint lacks it) but would not be trained: ` +
        `name its module in headModules`,
    );
  }
}

/**
 * The trainer's groups of `named`: for `head`, the head's groups at `o.headLr`; for `full`, the
 * other weights and the rest at `o.lr` and then the head's.
 */
function weightGroups(named: NamedParam[], o: MethodOptions, heads: readonly string[]): ParamGroupSpec[] {
  if (o.method === "head") {
    return headGroups(named, o.headLr, o.weightDecay).filter((g) => g.params.length > 0);
  }
  const isHead = (p: NamedParam) => within(heads, p.name);
  return [
    // no weight decay on biases and norms (as transformers' Trainer); the head at headLr, which is
    // --lr unless --head-lr is given
    {
      name: "weights",
      params: named.filter((p) => !isHead(p) && p.tensor.shape.length >= 2),
      lr: o.lr,
      weightDecay: o.weightDecay,
    },
    {
      name: "other",
      params: named.filter((p) => !isHead(p) && p.tensor.shape.length < 2),
      lr: o.lr,
      weightDecay: 0,
    },
    ...headGroups(named.filter(isHead), o.headLr, o.weightDecay),
  ].filter((g) => g.params.length > 0);
}

/**
 * Write `model` with its `trained` tensors as a model directory `dir` (the other files copied
 * from the source model's); `dtype` "F32" stores every trained tensor in F32, else the source's.
 */
async function writeTrained(
  model: Model,
  o: MethodOptions,
  trained: ReadonlyMap<string, Tensor>,
  dir: string,
  dtype?: "F32",
): Promise<void> {
  await writeMergedModel({ model, layers: new Map(), saved: trained }, dir, {
    sourceDir: o.modelDir,
    overwrite: true,
    labelNames: o.labelNames,
    dtype,
  });
}

/** Write the values of checkpoint `dir`'s tensors into `tensors` (the same keys and shapes, F32). */
async function restoreTensors(
  model: Model,
  tensors: ReadonlyMap<string, Tensor>,
  dir: string,
): Promise<void> {
  const saved = await openCheckpoint(dir);
  for (const [key, t] of tensors) {
    const shape = saved.has(key) ? saved.info(key).shape : null;
    if (shape?.join() !== t.shape.join()) {
      throw new Error(
        `${saved.path}: ${shape ? `"${key}" is [${shape}], the model's [${t.shape}]` : `no "${key}"`} ` +
          `(the run's checkpoint holds the trained tensors)`,
      );
    }
    model.gpu.stream.write(t.buffer, await saved.readF32(key));
    t.touch();
  }
}
