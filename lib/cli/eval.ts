/**
 * `hartley eval`: loss, perplexity and token accuracy (causal LM), accuracy (classification) or
 * entity scores by type (token classification) of a model directory, with an optional adapter, on
 * a data file or a built-in held-out split.
 * @module
 */
import { join } from "node:path";
import type { WeightDtype } from "../nn/load.ts";
import type { LossOn } from "../train/instruct.ts";
import { getGpu } from "../gpu/mod.ts";
import { type AttentionPath, withAttentionPath } from "../tensor/mod.ts";
import { evaluate, inOrder, type TaskName, TASKS } from "../train/tasks.ts";
import { tableFormatOf } from "../io/data_table.ts";
import { nonFinite } from "../train/log.ts";
import { DataError } from "../train/data_error.ts";
import { recordClassLabels } from "../train/readers.ts";
import { describeEval } from "../train/trainer.ts";
import { Progress } from "../train/progress.ts";
import type { TypeScores } from "../train/entities.ts";
import { textTable } from "./output.ts";
import {
  ATTENTION_FLAG,
  type CommandSpec,
  DTYPE_FLAG,
  FIELD_FLAGS,
  LOSS_ON_FLAG,
  MODEL_FLAGS,
  refuseUnused,
  TEMPLATE_KWARGS_FLAG,
  templateKwargs,
  withArgs,
} from "./args.ts";
import { loadForUse, planUse } from "./load.ts";
import { explainDeviceError } from "./errors.ts";
import { isBuiltinData, loadSplits } from "./setup.ts";
import { defaultData, TASK_FLAGS } from "./task.ts";

const FLAGS = {
  ...MODEL_FLAGS,
  data: {
    type: "string",
    arg: "PATH",
    help:
      "data file, or spamassassin / brown (their held-out split) [default: by task]; plain text is read " +
      "in non-overlapping windows of --seq-len + 1 tokens (the up to --seq-len tokens after the last one are " +
      "left out)",
  },
  task: {
    type: "string",
    choices: TASKS,
    help: "task [default: adapter's task_type, else the model's head]",
  },
  "seq-len": { type: "integer", default: 128, min: 2, help: "tokens per example / window" },
  "batch-size": { type: "integer", default: 16, min: 1, help: "examples per forward pass" },
  "max-eval": { type: "integer", min: 1, help: "evaluate on only this many examples" },
  dtype: DTYPE_FLAG,
  attention: ATTENTION_FLAG,
  ...FIELD_FLAGS,
  "loss-on": LOSS_ON_FLAG,
  "template-kwargs": TEMPLATE_KWARGS_FLAG,
  regression: { type: "boolean", help: "the labels are real values (default: when the head has one output)" },
  json: { type: "boolean", help: "print the result as one JSON object" },
  quiet: { type: "boolean", short: "q", help: "no progress display (the result and notes stay)" },
} as const;

const SPEC: CommandSpec<typeof FLAGS> = {
  name: "eval",
  summary: "Evaluate a model (and adapter): loss, perplexity or accuracy.",
  flags: FLAGS,
  notes:
    "example:\n  deno run -A cli.ts eval --model models/default --adapter runs/demo/ssh/adapter --data spamassassin --seq-len 32",
};

/** `hartley eval`. */
export function evalCommand(args: string[]): Promise<number> {
  return withArgs(SPEC, args, (v, _, given) =>
    withAttentionPath(v.attention as AttentionPath, async () => {
      const options = {
        needHead: true,
        model: v.model,
        modelGiven: given.has("model"),
        adapter: v.adapter,
        task: v.task as TaskName | undefined,
        dtype: v.dtype as WeightDtype,
        quiet: v.quiet,
      };
      // the flags are checked against the task before the weights load
      const plan = await planUse(options);
      refuseUnused(given, TASK_FLAGS, plan.task, `task ${plan.task}`);
      const data = v.data ?? defaultData(plan.task);
      const templateVariables = templateKwargs(v["template-kwargs"]);
      const gpu = await getGpu();
      const loaded = await loadForUse(gpu, options, plan);
      const { model, task } = loaded;
      try {
        const builtin = isBuiltinData(data);
        // labels read as real values without --regression: a regression head (the adapter's problem
        // type, if it names one, replaces config.json's)
        const regressor = task !== "seq-cls" || v.regression
          ? null
          : loaded.numLabels === 1
          ? "the head has one output"
          : model.config.problemType === "regression"
          ? `${join(loaded.modelDir, "config.json")} has problem_type "regression"`
          : null;
        const splits = await loadSplits(
          {
            task,
            data,
            evalOnly: true,
            evalFraction: 0,
            seqLen: v["seq-len"],
            batchSize: v["batch-size"],
            seed: 0,
            maxEval: v["max-eval"],
            textField: v["text-field"],
            pairField: v["pair-field"],
            lossOn: v["loss-on"] as LossOn,
            templateVariables,
            labelField: v["label-field"],
            regression: task === "seq-cls" && (v.regression || regressor !== null),
            quiet: v.quiet,
          },
          loaded.config,
          loaded.tokenizer,
          loaded.modelDir,
          loaded.numLabels,
        ).catch((e) => {
          if (regressor && e instanceof DataError) {
            throw new DataError(`${e.message} (the labels are read as real values: ${regressor})`);
          }
          throw e;
        });
        if (!splits.eval) throw new Error(`${data}: nothing to evaluate`);
        // a head without class names (LABEL_0, …) scores the data's names by the ids the data gave them
        const unnamed = model.config.labels.every((l, i) => l === `LABEL_${i}`);
        const names = splits.labelNames;
        if (unnamed && names && names.some((n, i) => n !== String(i))) {
          if (!builtin && !(await idsFixed(data, names))) {
            console.error(
              `${loaded.modelDir}'s head names no classes: the labels of ${data} count in their order of ` +
                `appearance there (${
                  names.map((n, i) => `${n} = ${i}`).join(", ")
                }); give integer labels to be sure`,
            );
          }
          model.config.labels = [...names, ...model.config.labels.slice(names.length)];
        }
        // label lists: each label scored apart (the head was trained so, whatever config.json says)
        if (splits.multiLabel) model.config.problemType = "multi_label_classification";
        let result;
        const progress = evalProgress(splits.eval.stepsPerEpoch, v.quiet);
        try {
          result = await evaluate(model, inOrder(splits.eval), task, (done) => progress?.update(done));
        } catch (e) {
          throw explainDeviceError(e, Object.keys(FLAGS));
        }
        progress?.done();
        const source = builtin ? `${data} (held-out split)` : data;
        console.log(
          v.json
            ? JSON.stringify({ task, data, ...result }, nonFinite)
            : `${task} on ${source}: ${describeEval(result)}`,
        );
        if (!v.json && result.entities) console.log(entityTable(result.entities));
        return 0;
      } finally {
        loaded.peft?.detach();
        model.dispose();
      }
    }));
}

/**
 * Whether data file or folder `data` fixes the ids of its class `names` itself: a folder of images
 * (its subfolders in sorted order), or a Parquet split whose ClassLabel names they are.
 */
async function idsFixed(data: string, names: readonly string[]): Promise<boolean> {
  // an image folder's classes are its sorted folder names; a saved dataset's labels are read as a file's
  if ((await Deno.stat(data)).isDirectory && tableFormatOf(data) === null) return true;
  const same = (classes: string[]) =>
    classes.length === names.length && classes.every((c, i) => c === names[i]);
  return [...(await recordClassLabels(data)).values()].some(same);
}

/** Evaluations of more batches than this show a progress display on stderr. */
const SHOW_PROGRESS_BATCHES = 16;

/** A progress display of `batches` batches (by eight: evaluate reports so), or null for few or --quiet. */
function evalProgress(batches: number, quiet: boolean): Progress | null {
  if (quiet || batches <= SHOW_PROGRESS_BATCHES) return null;
  return new Progress(batches, { label: "eval batches", plainInterval: 5 });
}

/** seqeval's report by entity type: precision, recall, F1 and the true entities of each type. */
function entityTable(byType: Record<string, TypeScores>): string {
  const rows = Object.entries(byType).map(([type, s]) => [
    type,
    s.precision.toFixed(4),
    s.recall.toFixed(4),
    s.f1.toFixed(4),
    String(s.support),
  ]);
  return textTable(["entity", "precision", "recall", "f1", "support"], rows);
}
