/**
 * The {@link ModelShapes} of a loaded model, for target matching and adapter checks: the
 * shapes of the architecture its family builds for its task, with the classification head's
 * label count as built.
 * @module
 */
import type { Model } from "../models/model.ts";
import { getFamily } from "../models/registry.ts";
import { type ModelShapes, modelShapes } from "../models/shapes.ts";

/** The shapes of `model` (its own `shapes` when the model carries them). */
export function shapesOfModel(model: Model): ModelShapes {
  const own = (model as { shapes?: ModelShapes }).shapes;
  if (own) return own;
  const architecture = getFamily(model.config.modelType)?.architectures[model.task];
  let shapes = modelShapes(model.config, { architecture });
  // a classification head built with another label count than the config's
  const head = shapes.linears.filter((l) =>
    l.path !== shapes.outputLayer && shapes.head.some((h) => l.path === h || l.path.startsWith(h + "."))
  );
  const last = head[head.length - 1];
  const built = last ? model.linears.get(last.path) : undefined;
  if (last && built && built.outFeatures !== last.outFeatures) {
    shapes = modelShapes(model.config, { architecture, numLabels: built.outFeatures });
  }
  return shapes;
}
