/**
 * `hartley merge`: a base model and an adapter → a Hugging Face model directory with
 * W + ΔW in every adapted weight and the trained head, loadable by transformers and by
 * `eval` without the adapter.
 * @module
 */
import { getGpu } from "../gpu/mod.ts";
import { isWithin, pathExists, statOrNull } from "../io/paths.ts";
import { type TaskName, TASKS } from "../train/tasks.ts";
import { ArgsError, type CommandSpec, withArgs } from "./args.ts";
import { loadForUse } from "./load.ts";

const FLAGS = {
  model: {
    type: "string",
    default: "models/default",
    arg: "DIR",
    help: "the base model directory (left out: the adapter's base_model_name_or_path)",
  },
  adapter: { type: "string", arg: "DIR", help: "the adapter directory (required)" },
  out: { type: "string", arg: "DIR", help: "the merged model directory to write (required)" },
  task: { type: "string", choices: TASKS, help: "task [default: the adapter's task_type]" },
  overwrite: { type: "boolean", help: "replace an existing --out" },
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
    if (isWithin(v.adapter, v.out)) {
      throw new ArgsError(
        `--out ${v.out} holds the adapter ${v.adapter}: the merged model goes into another directory`,
      );
    }
    if ((await statOrNull(v.out).catch(() => null))?.isFile) {
      throw new ArgsError(`--out ${v.out} is a file: give a directory for the merged model`);
    }
    if (!v.overwrite && await pathExists(v.out)) {
      throw new ArgsError(`--out ${v.out} already exists: pass --overwrite to replace it`);
    }
    const gpu = await getGpu();
    const loaded = await loadForUse(gpu, {
      needHead: true,
      model: v.model,
      modelGiven: given.has("model"),
      adapter: v.adapter,
      task: v.task as TaskName | undefined,
    });
    try {
      if (isWithin(loaded.modelDir, v.out)) {
        throw new ArgsError(
          `--out ${v.out} holds the base model ${loaded.modelDir}: the merged model goes into another directory`,
        );
      }
      await loaded.peft!.saveMerged(v.out, { overwrite: v.overwrite });
      console.log(`merged ${v.adapter} into ${loaded.modelDir}: wrote ${v.out} (${loaded.task})`);
      return 0;
    } finally {
      loaded.peft?.detach();
      loaded.model.dispose();
    }
  });
}
