/**
 * The {@link ModelShapes} of a loaded model, for target matching and adapter checks: the
 * shapes of the architecture its family builds for its task, with the classification head's
 * label count as built.
 * @module
 */
import type { Model } from "../models/model.ts";
import { getFamily } from "../models/registry.ts";
import { type LinearShape, type ModelShapes, modelShapes } from "../models/shapes.ts";

/** The shapes of `model` (its own `shapes` when the model carries them). */
export function shapesOfModel(model: Model): ModelShapes {
  const own = (model as { shapes?: ModelShapes }).shapes;
  if (own) return own;
  const architecture = getFamily(model.config.modelType)?.architectures[model.task];
  const shapes = modelShapes(model.config, { architecture });
  // a classification head built with another label count than the config's
  const last = classifierShape(shapes);
  const built = last && model.linears.get(last.path)?.outFeatures;
  return last && built !== undefined && built !== last.outFeatures
    ? modelShapes(model.config, { architecture, numLabels: built })
    : shapes;
}

/**
 * The label count of `model`'s classification head as built (the out features of the head's
 * last linear layer), or undefined for a model without one (a causal LM, a bare backbone).
 */
export function classifierLabels(model: Model): number | undefined {
  if (model.task !== "seq-cls" && model.task !== "token-cls" && model.task !== "image-cls") return undefined;
  const last = classifierShape(shapesOfModel(model));
  return last && model.linears.get(last.path)?.outFeatures;
}

/** The last linear layer of the task head, other than a language model's output layer. */
function classifierShape(s: ModelShapes): LinearShape | undefined {
  const head = s.linears.filter((l) =>
    l.path !== s.outputLayer && s.head.some((h) => l.path === h || l.path.startsWith(h + "."))
  );
  return head[head.length - 1];
}
