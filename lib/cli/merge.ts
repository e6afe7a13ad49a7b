/**
 * `hartley merge`: a base model and an adapter → a Hugging Face model directory with
 * W + ΔW in every adapted weight and the trained head, loadable by transformers and by
 * `eval` without the adapter.
 * @module
 */
import { getGpu } from "../gpu/mod.ts";
import { isWithin, pathExists } from "../io/paths.ts";
import { storageSummary } from "../models/storage.ts";
import { WEIGHT_DTYPES, type WeightDtype } from "../nn/load.ts";
import { CLASSIFIER_HEAD_NAMES } from "../peft/targets.ts";
import { type TaskName, TASKS } from "../train/tasks.ts";
import { ArgsError, type CommandSpec, DEFAULT_MODEL, DTYPE_FLAG, withArgs } from "./args.ts";
import { loadForUse, planUse } from "./load.ts";
import { writingProgress } from "./loading.ts";
import { checkOutputDir } from "./output.ts";

const FLAGS = {
  model: {
    type: "string",
    default: DEFAULT_MODEL,
    arg: "DIR",
    help: "the base model directory (left out: the adapter's base_model_name_or_path)",
  },
  adapter: { type: "string", arg: "DIR", help: "the adapter directory (required)" },
  out: { type: "string", arg: "DIR", help: "the merged model directory to write (required)" },
  task: { type: "string", choices: TASKS, help: "task [default: the adapter's task_type]" },
  overwrite: {
    type: "boolean",
    help: "replace the model files in an existing --out (what else it holds is kept)",
  },
  dtype: {
    ...DTYPE_FLAG,
    choices: ["auto", ...WEIGHT_DTYPES],
    default: "auto",
    help:
      "storage of the base's frozen weights while merging: W + ΔW reads W from the checkpoint files, so " +
      "the merged model is the same for each; auto: q4, or f32 when the adapter's modules_to_save name more " +
      "than a classifier head",
  },
  "merged-dtype": {
    type: "string",
    choices: ["f32", "f16", "bf16"],
    arg: "DTYPE",
    help: "store the tensors merging changes (W + ΔW, a trained head) as DTYPE; the others stay as stored " +
      "[default: as stored] (f32 holds a W + ΔW beyond f16's range)",
  },
} as const;

const SPEC: CommandSpec<typeof FLAGS> = {
  name: "merge",
  summary: "Merge an adapter into its base model and write a Hugging Face model directory.",
  flags: FLAGS,
  notes:
    "example:\n  deno run -A cli.ts merge --model models/default --adapter runs/demo/ssh/adapter --out runs/merged",
};

/** `hartley merge`. */
export function mergeCommand(args: string[]): Promise<number> {
  return withArgs(SPEC, args, async (v, _, given) => {
    if (!v.adapter) throw new ArgsError(`--adapter DIR is required`);
    if (!v.out) throw new ArgsError(`--out DIR is required`);
    await checkOutputDir("out", v.out, { whole: true }); // a folder, or one that can be made, written beside itself
    if (isWithin(v.adapter, v.out)) {
      throw new ArgsError(
        `--out ${v.out} holds the adapter ${v.adapter}: the merged model goes into another directory`,
      );
    }
    if (!v.overwrite && await pathExists(v.out)) {
      throw new ArgsError(`--out ${v.out} already exists: pass --overwrite to replace it`);
    }
    const options = {
      needHead: true,
      model: v.model,
      modelGiven: given.has("model"),
      adapter: v.adapter,
      task: v.task as TaskName | undefined,
    };
    // the files first: the base and adapter are known before any weight is loaded
    const plan = await planUse(options);
    if (isWithin(plan.modelDir, v.out)) {
      throw new ArgsError(
        `--out ${v.out} holds the base model ${plan.modelDir}: the merged model goes into another directory`,
      );
    }
    const dtype = frozenDtype(v.dtype, plan.adapterConfig?.modulesToSave ?? null);
    const loaded = await loadForUse(await getGpu(), { ...options, dtype }, plan);
    try {
      console.error(`storage ${storageSummary(loaded.model)}`);
      await loaded.peft!.saveMerged(v.out, {
        overwrite: v.overwrite,
        onProgress: writingProgress(),
        dtype: v["merged-dtype"]?.toUpperCase() as "F32" | "F16" | "BF16" | undefined,
      });
      console.error(`merged ${v.adapter} into ${loaded.modelDir}: wrote ${v.out} (${loaded.task})`);
      return 0;
    } finally {
      loaded.peft?.detach();
      loaded.model.dispose();
    }
  });
}

/**
 * The storage of the base's frozen weights for `--dtype` (`flag`) and the adapter's
 * modules_to_save: auto is q4, except where those name more than a classifier head (an embedding
 * table, a pooler), whose trained values need f32 parameters and q4 would store them quantized.
 */
function frozenDtype(flag: string, modulesToSave: readonly string[] | null): WeightDtype {
  if (flag !== "auto") return flag as WeightDtype;
  const heads = (modulesToSave ?? []).every((m) => CLASSIFIER_HEAD_NAMES.some((h) => m.endsWith(h)));
  return heads ? "q4" : "f32";
}
