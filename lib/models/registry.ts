/**
 * The model families loadModel can build, by config.json `model_type`. A family says which
 * transformers architecture serves each task and builds a {@link Model} from loaded weights.
 * The built-in families are registered in `families.ts`; {@link registerFamily} adds others.
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import type { HfConfig } from "../io/hf_config.ts";
import type { LoadedWeights, WeightDtype } from "../nn/load.ts";
import type { Model, ModelTask } from "./model.ts";
import type { ModelShapes } from "./shapes.ts";

/** What a family's builder gets. */
export interface BuildContext {
  gpu: Gpu;
  /** The model directory. */
  dir: string;
  config: HfConfig;
  /** The task asked for (or read from `config.architectures`). */
  task: ModelTask;
  /** The shapes of `architectures[task]` (with the asked number of labels). */
  shapes: ModelShapes;
  /** The parameters, keyed as in `shapes` (already on the GPU, shape-checked). */
  weights: LoadedWeights;
  /** Storage of the frozen matrices. */
  dtype: WeightDtype;
}

/** A model family. */
export interface Family {
  /** The transformers class for each task the family supports, e.g. `{ "causal-lm": "GPT2LMHeadModel" }`. */
  architectures: Partial<Record<ModelTask, string>>;
  /** Build the model (synchronously: the weights are already loaded). */
  build(ctx: BuildContext): Model;
}

const families = new Map<string, Family>();

/** Register (or replace) the family that serves config.json `model_type` `name`. */
export function registerFamily(name: string, family: Family): void {
  families.set(name, family);
}

/** The family registered for `name`, or undefined. */
export function getFamily(name: string): Family | undefined {
  return families.get(name);
}

/** The registered `model_type`s, sorted. */
export function registeredFamilies(): string[] {
  return [...families.keys()].sort();
}
