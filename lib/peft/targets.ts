/**
 * Which layers an adapter adapts and which modules it trains in full, with PEFT's matching
 * rules applied to a model's shapes (lib/models/shapes.ts):
 * - `target_modules` as a list of names: a module matches when its path equals a name or
 *   ends with "." + name; as one string: a regular expression that must match the whole path;
 *   "all-linear": every linear layer except the language-model output layer.
 * - `exclude_modules`: the same rules; matching layers are never adapted.
 * - `layers_to_transform` (list targets only; the config refuses it with a string, as PEFT):
 *   the layer index is the number after the last `.<name>.` component (`.<layers_pattern>.` when
 *   given) followed by a dot. As PEFT, it filters only the layers a name matches as a suffix: a
 *   layer whose whole path is listed is adapted whatever its index.
 * - `modules_to_save`: a module matches when its path ends with the name (a plain suffix, as
 *   PEFT does, so "classifier" also matches DistilBERT's "pre_classifier"); with task type
 *   SEQ_CLS or TOKEN_CLS, PEFT adds "classifier" and "score". Layers inside a module to save are
 *   never adapted.
 * Only linear layers are adapted. For a new adapter, a target name that matches no linear layer,
 * or a modules_to_save name that matches no module, is an error (most likely a typo); for a saved
 * one (`{ saved: true }`) such names are skipped as PEFT skips them, so long as some target
 * matches (its weights file then decides which layers it adapts).
 * @module
 */
import type { ModelType } from "../io/hf_config.ts";
import { type LinearShape, type ModelShapes, type ParamShape, paramsUnder } from "../models/shapes.ts";
import type { CommonAdapterConfig, TargetModules } from "./config.ts";

/** PEFT's default targets per model family. */
export const DEFAULT_TARGET_MODULES: Readonly<Record<ModelType, readonly string[]>> = {
  gpt2: ["c_attn"],
  bert: ["query", "value"],
  roberta: ["query", "value"],
  distilbert: ["q_lin", "v_lin"],
  llama: ["q_proj", "v_proj"],
  mistral: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
  qwen3: ["q_proj", "v_proj"],
  // PEFT has no default for Phi-3; its one attention input projection holds q, k and v
  phi3: ["qkv_proj"],
  vit: ["query", "value"],
};

/**
 * The target_modules an adapter for `modelType` saves when none were asked for: ours, written out.
 * A saved null would mean PEFT's default, which is not ours everywhere (FourierFT on GPT-2 adapts
 * mlp.c_proj) and missing for some families (PEFT then asks for target_modules).
 */
export function savedDefaultTargets(modelType: ModelType): string[] {
  return [...DEFAULT_TARGET_MODULES[modelType]];
}

/** PEFT's shorthand for every linear layer but the output layer (case-insensitive). */
export const ALL_LINEAR = "all-linear";

/** Head names PEFT adds to modules_to_save for task types SEQ_CLS and TOKEN_CLS. */
export const CLASSIFIER_HEAD_NAMES: readonly string[] = ["classifier", "score"];

/**
 * The parts of a classification head not named "classifier" or "score" (e.g. DistilBERT's
 * pre_classifier), which the CLI lists in modules_to_save by name. (PEFT's suffix match saves
 * pre_classifier under SEQ_CLS anyway, as "pre_classifier" ends with "classifier"; a head part
 * whose name ends otherwise is saved only when named.)
 */
export function unsavedHeadModules(shapes: ModelShapes): string[] {
  return shapes.head.filter((h) => h !== shapes.outputLayer && !CLASSIFIER_HEAD_NAMES.includes(h));
}

/** The task types whose heads PEFT adds to modules_to_save itself. */
export function addsClassifierHeads(taskType: string | null | undefined): boolean {
  return taskType === "SEQ_CLS" || taskType === "TOKEN_CLS";
}

/** A target or module name that matches nothing in the model. */
export class TargetError extends Error {
  /** Always "TargetError". */
  override name = "TargetError";
}

/** The config fields that choose targets and modules to save. */
export type TargetSpec = Pick<
  CommonAdapterConfig,
  "targetModules" | "excludeModules" | "layersToTransform" | "layersPattern" | "modulesToSave" | "taskType"
>;

/** Options of {@link resolveTargets} and {@link resolveModulesToSave}. */
export interface ResolveOptions {
  /**
   * The config of a saved adapter: names that match nothing are skipped, as PEFT does when it
   * loads one (at least one target must still match). Default false: a new adapter, where such
   * a name is an error.
   */
  saved?: boolean;
}

/** A module trained in full and saved with the adapter, with its parameters. */
export interface SavedModule {
  path: string;
  params: ParamShape[];
}

/** Whether module `path` matches `names` under PEFT's target rule (list: equal or "." + name suffix; string: full regex). */
export function matchesModules(path: string, names: TargetModules): boolean {
  if (typeof names === "string") return fullMatch(names, path);
  return names.some((n) => path === n || path.endsWith("." + n));
}

/**
 * The linear layers `spec` adapts in `shapes`' model, in module order.
 * @throws TargetError when a target name (or the regular expression) matches no linear layer
 *   (with `saved`: when none matches), or when exclusions leave nothing to adapt; the message
 *   lists the model's layer names.
 */
export function resolveTargets(
  shapes: ModelShapes,
  spec: TargetSpec,
  opts: ResolveOptions = {},
): LinearShape[] {
  const targets = spec.targetModules ?? [...DEFAULT_TARGET_MODULES[shapes.modelType]];
  const allLinear = typeof targets === "string" && targets.toLowerCase() === ALL_LINEAR;
  if (!allLinear) checkTargetsMatch(shapes, targets, !opts.saved);
  const saved = modulesToSaveNames(spec).names;
  const layerRe = spec.layersToTransform === null ? null : layerIndexPattern(spec.layersPattern);
  const chosen = shapes.linears.filter((l) => {
    if (spec.excludeModules !== null && matchesModules(l.path, spec.excludeModules)) return false;
    if (saved.some((m) => insideModule(l.path, m))) return false;
    if (allLinear) return l.path !== shapes.outputLayer;
    if (!matchesModules(l.path, targets)) return false;
    // PEFT filters by layer only the names matched as a suffix, not a path listed whole
    if (layerRe === null || typeof targets === "string" || targets.includes(l.path)) return true;
    const m = layerRe.exec(l.path);
    return m !== null && spec.layersToTransform!.includes(Number(m[1]));
  });
  if (chosen.length === 0) {
    throw new TargetError(
      `target_modules ${JSON.stringify(targets)} leave no layer of ${shapes.architecture} to adapt after ` +
        `exclude_modules ${JSON.stringify(spec.excludeModules)}, modules_to_save ${JSON.stringify(saved)} ` +
        `and layers_to_transform ${JSON.stringify(spec.layersToTransform)}`,
    );
  }
  return chosen;
}

/**
 * The modules `spec` trains in full (outermost matches only), each with its parameters.
 * @throws TargetError when a name given in modules_to_save matches no module (the heads PEFT
 *   adds for SEQ_CLS and TOKEN_CLS, "classifier" and "score", may be absent, listed or not; with
 *   `saved`, any name may).
 */
export function resolveModulesToSave(
  shapes: ModelShapes,
  spec: TargetSpec,
  opts: ResolveOptions = {},
): SavedModule[] {
  const { names, optional } = modulesToSaveNames(spec);
  const paths = modulePaths(shapes);
  const matched = new Set<string>();
  for (const name of names) {
    const hits = paths.filter((p) => p.endsWith(name));
    if (hits.length === 0 && !optional.has(name) && !opts.saved) {
      throw new TargetError(
        `modules_to_save "${name}" matches no module of ${shapes.architecture} (its head: ${
          shapes.head.length > 0 ? shapes.head.join(", ") : "none"
        }; top-level modules: ${[...new Set(paths.map((p) => p.split(".")[0]))].join(", ")})`,
      );
    }
    for (const h of hits) matched.add(h);
  }
  return [...matched]
    .filter((p) => ![...matched].some((q) => q !== p && p.startsWith(q + ".")))
    .map((path) => ({ path, params: paramsUnder(shapes, path) }));
}

/** The modules_to_save names in effect: the config's, plus PEFT's classifier heads (optional ones). */
function modulesToSaveNames(spec: TargetSpec): { names: string[]; optional: Set<string> } {
  const names = [...(spec.modulesToSave ?? [])];
  const optional = new Set<string>();
  if (addsClassifierHeads(spec.taskType)) {
    // PEFT's own SEQ_CLS and TOKEN_CLS adapters list both names; a model has one of them at most
    for (const h of CLASSIFIER_HEAD_NAMES) {
      if (!names.includes(h)) names.push(h);
      optional.add(h);
    }
  }
  return { names, optional };
}

/** Every module path of the model (leaf and container modules), in first-seen order. */
export function modulePaths(shapes: ModelShapes): string[] {
  const seen = new Set<string>();
  for (const p of shapes.params) {
    const parts = p.key.split(".");
    for (let i = 1; i < parts.length; i++) seen.add(parts.slice(0, i).join("."));
  }
  return [...seen];
}

/** The distinct last names of the model's linear layers (e.g. query, key, value, dense). */
export function linearNames(shapes: ModelShapes): string[] {
  return [...new Set(shapes.linears.map((l) => l.path.slice(l.path.lastIndexOf(".") + 1)))];
}

/**
 * Every target name must match a linear layer (`every`), or at least one must (PEFT's check);
 * the error names the first that matches none.
 */
function checkTargetsMatch(shapes: ModelShapes, targets: TargetModules, every: boolean): void {
  const asTargets = (name: string): TargetModules => typeof targets === "string" ? name : [name];
  const names = typeof targets === "string" ? [targets] : targets;
  const missing = names.filter((n) => !shapes.linears.some((l) => matchesModules(l.path, asTargets(n))));
  if (missing.length === 0 || (!every && missing.length < names.length)) return;
  const name = missing[0], one = asTargets(name);
  const what = typeof targets === "string"
    ? `target_modules regular expression ${JSON.stringify(name)}`
    : `target module "${name}"`;
  const others = modulePaths(shapes).filter((p) => matchesModules(p, one));
  const notLinear = others.length > 0
    ? `; it names ${others.length} module${others.length > 1 ? "s" : ""} that ${
      others.length > 1 ? "are" : "is"
    } not a linear layer (e.g. ${others[0]}), and adapters only adapt linear layers`
    : "";
  throw new TargetError(
    `${what} matches no linear layer of ${shapes.architecture}${notLinear}; its linear layers are named ` +
      `${linearNames(shapes).join(", ")} (e.g. ${shapes.linears[0].path})`,
  );
}

/** PEFT's `(^|.*\.)name($|\..*)`: `name` is a run of whole components of `path`. */
function insideModule(path: string, name: string): boolean {
  return `.${path}.`.includes(`.${name}.`);
}

/** The regular expression that finds a layer index in a module path (PEFT's rule). */
function layerIndexPattern(patterns: string[] | null): RegExp {
  const names = patterns === null ? "[^.]*" : `(?:${patterns.join("|")})`;
  return new RegExp(`^.*\\.${names}\\.(\\d+)\\.`);
}

function fullMatch(pattern: string, s: string): boolean {
  return new RegExp(`^(?:${pattern})$`).test(s);
}
