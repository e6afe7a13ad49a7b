/**
 * The fine-tuning methods of `train`, on a loaded model: `ssh`, `lora`, `fourierft` (a PEFT
 * adapter on the target layers plus the task head, saved as an adapter directory), `full`
 * (every parameter) and `head` (the frozen model with only the task head trained, a linear
 * probe; the baseline of the demo). Each gives the trainer its named parameter groups
 * (coefficients at `--lr`, the head at `--head-lr`; full fine-tuning trains every weight at `--lr`
 * unless `--head-lr` is given) and writes its weights into checkpoints (in F32, for an exact
 * resume) and the run's output (full / head: in the source model's dtypes).
 * @module
 */
import { join } from "node:path";
import type { Model } from "../models/model.ts";
import type { ModelShapes } from "../models/shapes.ts";
import { type AdapterConfig, fourierftConfig, loraConfig, peftTaskType, sshConfig } from "../peft/config.ts";
import { attachAdapter, loadAdapterInto, type PeftModel } from "../peft/apply.ts";
import { shapesOfModel } from "../peft/model_shapes.ts";
import { resolveTargets, TargetError } from "../peft/targets.ts";
import { TORCH_RANDPERM_LIMIT } from "../peft/torch_randperm.ts";
import type { FourierFTConfig, Init, Selection } from "../peft/config.ts";
import type { Transform } from "../spectral/transforms.ts";
import { adapterGroups } from "../train/groups.ts";
import type { ParamGroupSpec } from "../train/trainer.ts";
import type { TaskName } from "../train/tasks.ts";
import { ArgsError } from "./args.ts";
import { prepareWeightMethod } from "./weight_methods.ts";

/** The methods `train` offers. */
export const METHODS = ["ssh", "lora", "fourierft", "full", "head"] as const;

/** A fine-tuning method. */
export type Method = typeof METHODS[number];

/**
 * The flags of `train` that only some methods use, and those methods (the others refuse them:
 * ignoring them silently would mislead).
 */
export const METHOD_FLAGS: Readonly<Record<string, readonly Method[]>> = {
  n: ["ssh", "fourierft"],
  alpha: ["ssh", "fourierft"],
  "energy-ratio": ["ssh"],
  transform: ["ssh"],
  selection: ["ssh"],
  init: ["ssh"],
  r: ["lora"],
  "lora-alpha": ["lora"],
  "lora-dropout": ["lora"],
  "target-modules": ["ssh", "lora", "fourierft"],
  // --method head trains the head alone, at --head-lr
  lr: ["ssh", "lora", "fourierft", "full"],
};

/** The default coefficient learning rate of each method (SPEC §1.4 for SSH and FourierFT). */
export const DEFAULT_LR: Record<Method, number> = {
  ssh: 0.05,
  fourierft: 0.05,
  lora: 5e-4,
  full: 5e-5,
  head: 1e-3,
};

/** The task head's learning rate when `--head-lr` is not given, but for `full`. */
export const DEFAULT_HEAD_LR = 1e-3;

/**
 * The task head's learning rate: `--head-lr` when given, else `--lr` for full fine-tuning (one
 * rate for every weight, as transformers' Trainer has) and {@link DEFAULT_HEAD_LR} for the others.
 */
export function headLrOf(method: Method, lr: number, given: number | undefined): number {
  return given ?? (method === "full" ? lr : DEFAULT_HEAD_LR);
}

/** Method settings from the command line. */
export interface MethodOptions {
  method: Method;
  task: TaskName;
  /** SSH / FourierFT coefficients per layer (FourierFT's n_frequency); default: the config's. */
  n?: number;
  energyRatio: number;
  /** SSH α; FourierFT scaling; default: the config's. */
  alpha?: number;
  transform: Transform;
  selection: Selection;
  init: Init;
  r: number;
  loraAlpha: number;
  loraDropout: number;
  targetModules?: string[] | string;
  /** Seed of SSH's positions, the new weights' init and dropout. */
  seed: number;
  /** FourierFT's random_loc_seed (its positions); default: PEFT's. */
  randomLocSeed?: number;
  lr: number;
  /** The task head's learning rate ({@link headLrOf}). */
  headLr: number;
  weightDecay: number;
  /** The base model directory (merged outputs copy its files). */
  modelDir: string;
  /**
   * Parts of the task head not named "classifier" or "score" (e.g. DistilBERT's pre_classifier;
   * see `unsavedHeadModules`) and modules new to the checkpoint (a masked LM's missing pooler),
   * named in the adapter's modules_to_save; `head` trains and saves them with the head.
   */
  headModules?: string[];
  labelNames?: string[];
}

/** A method attached to a model. */
export interface PreparedMethod {
  /** The adapter handle (ssh, lora, fourierft). */
  peft: PeftModel | null;
  groups: ParamGroupSpec[];
  /** Trainable values. */
  trainable: number;
  /**
   * Write the trained weights into a checkpoint folder (`adapter/`, or `model/` with every trained
   * tensor in F32, so that a resumed run starts from exactly these weights).
   */
  writeWeights(dir: string): Promise<void>;
  /**
   * Write the run's result into `outDir` (`adapter/`, or `model/` in the source model's dtypes);
   * returns its path.
   */
  saveFinal(outDir: string): Promise<string>;
  /** The adapter config (adapter methods). */
  adapterConfig: AdapterConfig | null;
}

/** The adapter config of an adapter method (null for full / head). */
export function adapterConfigOf(o: MethodOptions, baseModel: string): AdapterConfig | null {
  const common = {
    targetModules: o.targetModules ?? null,
    taskType: peftTaskType(o.task),
    // PEFT adds the SEQ_CLS and TOKEN_CLS heads itself (their other parts, such as DistilBERT's
    // pre_classifier, are named too); an image classifier's head is named explicitly
    modulesToSave: o.task === "image-cls" ? ["classifier"] : o.headModules?.length ? o.headModules : null,
    baseModelNameOrPath: baseModel,
  };
  switch (o.method) {
    case "ssh":
      return sshConfig({
        ...common,
        ...defined({ n: o.n, alpha: o.alpha }),
        energyRatio: o.energyRatio,
        transform: o.transform,
        selection: o.selection,
        init: o.init,
        seed: o.seed,
      });
    case "lora":
      return loraConfig({ ...common, r: o.r, loraAlpha: o.loraAlpha, loraDropout: o.loraDropout });
    case "fourierft":
      return fourierftConfig({
        ...common,
        ...defined({ nFrequency: o.n, scaling: o.alpha, randomLocSeed: o.randomLocSeed }),
      });
    default:
      return null;
  }
}

/** `o` without its undefined fields (which would replace a config's defaults). */
function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * A new adapter's refusal of its flags as an {@link ArgsError} naming the flag: targets that
 * match no layer (--target-modules), more positions than a layer has (--n); other errors unchanged.
 */
function asFlagError(e: unknown, o: MethodOptions, config: AdapterConfig): unknown {
  if (e instanceof TargetError) return new ArgsError(`--target-modules: ${e.message}`);
  if (e instanceof RangeError && /positions do not fit|n_frequency = /.test(e.message)) {
    const n = config.peftType === "FOURIERFT"
      ? config.nFrequency
      : config.peftType === "SSH"
      ? config.n
      : null;
    return new ArgsError(`--n ${n}${o.n === undefined ? " (the default)" : ""}: ${e.message}`);
  }
  return e;
}

/**
 * Attach the method to `model`. With `resumeDir` (a checkpoint folder) the trained weights come
 * from there: the adapter for adapter methods, the F32 tensors of `head` from its `model/` (the
 * frozen rest stays the source's, stored as at the start; a full model is loaded from the
 * checkpoint's `model/` by the caller).
 */
export async function prepareMethod(
  model: Model,
  o: MethodOptions,
  resumeDir?: string,
): Promise<PreparedMethod> {
  const config = adapterConfigOf(o, o.modelDir);
  return config
    ? await prepareAdapter(model, o, config, resumeDir)
    : await prepareWeightMethod(model, o, resumeDir);
}

/** An adapter method: the adapter of `config`, new or loaded from checkpoint `resumeDir`. */
async function prepareAdapter(
  model: Model,
  o: MethodOptions,
  config: AdapterConfig,
  resumeDir: string | undefined,
): Promise<PreparedMethod> {
  const peft = resumeDir
    ? await loadAdapterInto(model, join(resumeDir, "adapter"), { seed: o.seed, dropoutSeed: o.seed })
    : await attachNewAdapter(model, o, config);
  peft.labelNames ??= o.labelNames;
  return {
    peft,
    groups: adapterGroups(peft, { lr: o.lr, headLr: o.headLr, weightDecay: o.weightDecay }),
    trainable: peft.trainableCount(),
    writeWeights: (dir) => peft.save(join(dir, "adapter")),
    saveFinal: async (outDir) => {
      const dir = join(outDir, "adapter");
      await peft.save(dir);
      return dir;
    },
    adapterConfig: config,
  };
}

/** A new adapter of `config` on `model` (a refusal of the flags rethrown by {@link asFlagError}). */
async function attachNewAdapter(model: Model, o: MethodOptions, config: AdapterConfig): Promise<PeftModel> {
  try {
    const slow = config.peftType === "FOURIERFT" ? largeDrawSizes(shapesOfModel(model), config) : [];
    if (slow.length > 0) {
      console.error(
        `fourierft: drawing PEFT's positions for ${slow.join(", ")} layers (PyTorch's 64-bit randperm ` +
          `runs over every weight: seconds per size)`,
      );
    }
    return await attachAdapter(model, config, { seed: o.seed, dropoutSeed: o.seed });
  } catch (e) {
    throw asFlagError(e, o, config);
  }
}

/**
 * The sizes (M×N) of the layers `config` adapts in `shapes` whose FourierFT positions take
 * PyTorch's 64-bit randperm over all M·N weights (from 2³²/20 on: seconds each, once per size).
 */
export function largeDrawSizes(shapes: ModelShapes, config: FourierFTConfig): string[] {
  const large = resolveTargets(shapes, config).filter((l) =>
    l.outFeatures * l.inFeatures >= TORCH_RANDPERM_LIMIT
  );
  return [...new Set(large.map((l) => `${l.outFeatures}×${l.inFeatures}`))];
}
