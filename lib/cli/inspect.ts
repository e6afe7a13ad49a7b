/**
 * `hartley inspect`: a model and adapter summary; with `--layer`, an SVG heatmap of a
 * layer's Hartley energy T(W)² (log scale, block maxima for big layers) with SSH's chosen
 * positions outlined (the adapter's, or those SSH would choose with --n / --energy-ratio),
 * like the paper's Figure 3 (layer_heatmap.ts); with `--log`, an SVG loss curve of a run log. An
 * existing SVG file is replaced (atomically) only with `--overwrite`, checked before anything loads.
 * @module
 */
import { getGpu } from "../gpu/mod.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { fileInFolder, statOrNull } from "../io/paths.ts";
import { type AdapterConfig, frequencyFraction } from "../peft/config.ts";
import type { PeftModel } from "../peft/apply.ts";
import { shapesOfModel } from "../peft/model_shapes.ts";
import { type Transform, TRANSFORMS } from "../spectral/transforms.ts";
import { readRunLog } from "../train/log.ts";
import { type TaskName, TASKS } from "../train/tasks.ts";
import { linePlotSvg, type Series } from "../viz/svg.ts";
import {
  ArgsError,
  type CommandSpec,
  DEFAULT_MODEL,
  DTYPE_FLAG,
  type FlagValues,
  refuseGiven,
  SEED_MAX,
  withArgs,
} from "./args.ts";
import { formatBytes, storageSummary } from "../models/storage.ts";
import type { ModelShapes } from "../models/shapes.ts";
import type { WeightDtype } from "../nn/load.ts";
import { type Loaded, loadForUse } from "./load.ts";
import { writeLayerHeatmap } from "./layer_heatmap.ts";
import { endTokenIds } from "../infer/generate.ts";
import { checkOutputFolder } from "./output.ts";
import { loadChatTemplate } from "../io/chat_template.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import type { Model } from "../models/model.ts";

const FLAGS = {
  model: {
    type: "string",
    arg: "DIR",
    help: "model directory to summarise (left out, with --adapter: the adapter's base)",
  },
  adapter: { type: "string", arg: "DIR", help: "adapter directory to summarise (and mark on the heatmap)" },
  task: { type: "string", choices: TASKS, help: "task head to build [default: from the adapter or config]" },
  dtype: DTYPE_FLAG,
  layer: {
    type: "string",
    arg: "PATH",
    help: "write the energy heatmap of this linear layer (a path or its unique suffix)",
  },
  transform: {
    type: "string",
    choices: TRANSFORMS,
    help: "transform of the energy [default: the adapter's, else dht]",
  },
  n: { type: "integer", default: 750, min: 1, help: "positions to mark when there is no adapter" },
  "energy-ratio": {
    type: "number",
    default: 0.7,
    min: 0,
    max: 1,
    help: "share of marked positions by energy",
  },
  seed: { type: "integer", default: 0, min: 0, max: SEED_MAX, help: "seed of the random share of positions" },
  "max-cells": {
    type: "integer",
    default: 192,
    min: 8,
    help: "heatmap cells per side (bigger layers are reduced)",
  },
  log: {
    type: "string",
    arg: "FILE",
    help: "run log (log.jsonl, or a run folder holding one) to plot as a loss curve",
  },
  svg: { type: "string", arg: "FILE", help: "where to write the SVG [default: energy.svg / loss.svg]" },
  overwrite: { type: "boolean", help: "replace an existing SVG file (never the --log file)" },
} as const;

const SPEC: CommandSpec<typeof FLAGS> = {
  name: "inspect",
  summary: "Summarise a model and adapter; plot a layer's Hartley energy or a run's loss curve as SVG.",
  flags: FLAGS,
  notes: [
    "examples:",
    "  deno run -A cli.ts inspect --model models/default --adapter runs/demo/ssh/adapter",
    "  deno run -A cli.ts inspect --model models/default --layer h.0.attn.c_attn --svg energy.svg",
    "  deno run -A cli.ts inspect --log runs/demo/ssh/log.jsonl --svg loss.svg",
  ].join("\n"),
};

/** `hartley inspect`. */
export function inspectCommand(args: string[]): Promise<number> {
  return withArgs(SPEC, args, async (v, _, given) => {
    await checkInspectArgs(v, given);
    const svgs = svgFiles(v);
    if (v.log && svgs.loss) {
      await writeFileAtomic(svgs.loss, await lossCurve(v.log));
      console.error(`wrote ${svgs.loss} (loss curve of ${v.log})`);
    }
    if (!v.model && !v.adapter) return 0;
    const gpu = await getGpu();
    const loaded = await loadForUse(gpu, {
      // an adapter alone: its base_model_name_or_path, as eval and merge take it
      model: v.model ?? DEFAULT_MODEL,
      modelGiven: given.has("model"),
      adapter: v.adapter,
      task: v.task as TaskName | undefined,
      dtype: v.dtype as WeightDtype,
    });
    const { model, peft } = loaded;
    try {
      const shapes = shapesOfModel(model);
      const total = parameterCount(shapes);
      await printModelSummary(loaded, shapes, total);
      if (peft && loaded.adapterConfig) printAdapterSummary(v.adapter, loaded.adapterConfig, peft, total);
      if (!v.layer) return 0;
      await writeLayerHeatmap(gpu, loaded, shapes, {
        layer: v.layer,
        adapterDir: v.adapter,
        transform: v.transform as Transform | undefined,
        n: v.n,
        energyRatio: v["energy-ratio"],
        seed: v.seed,
        maxCells: v["max-cells"],
        svg: svgs.energy!,
      });
      return 0;
    } finally {
      peft?.detach();
      model.dispose();
    }
  });
}

/**
 * Refuse flags that do not go together, and an SVG file that cannot be written or would replace one
 * without --overwrite.
 */
async function checkInspectArgs(v: FlagValues<typeof FLAGS>, given: ReadonlySet<string>): Promise<void> {
  if (!v.model && !v.adapter && !v.log) {
    throw new ArgsError(
      `give --model DIR or --adapter DIR (summary, --layer heatmap) and/or --log FILE (loss curve)`,
    );
  }
  if (v.layer && !v.model && !v.adapter) throw new ArgsError(`--layer needs --model (or --adapter)`);
  refuseUnusedFlags(v, given);
  if (v.svg && v.log && v.layer) {
    throw new ArgsError(
      `--svg names one file: give it with --log or with --layer, not both (run inspect twice)`,
    );
  }
  // the run log is found first: a missing one is reported before the SVG it would make
  const logFile = v.log ? await logFileOf(v.log) : undefined;
  for (const path of Object.values(svgFiles(v))) {
    if (path !== undefined) await checkSvg(path, v.svg !== undefined, v.overwrite, logFile);
  }
}

/** The SVG files inspect writes: --log's loss curve and --layer's heatmap (--svg, else loss.svg, energy.svg). */
function svgFiles(v: { svg?: string; log?: string; layer?: string }): { loss?: string; energy?: string } {
  return {
    loss: v.log ? (v.svg && !v.layer ? v.svg : "loss.svg") : undefined,
    energy: v.layer ? v.svg ?? "energy.svg" : undefined,
  };
}

/**
 * Refuse SVG file `path` (`given` with --svg, else a default name) whose folder is missing, that is
 * a directory or the run log `logFile`, or that exists, without `overwrite`.
 */
async function checkSvg(
  path: string,
  given: boolean,
  overwrite: boolean | undefined,
  logFile: string | undefined,
): Promise<void> {
  const named = given ? `--svg ${path}` : `${path} (written without --svg)`;
  if (given) await checkOutputFolder("svg", path);
  const stat = await statOrNull(path);
  if (!stat) return;
  if (stat.isDirectory) throw new ArgsError(`${named} is a directory: give a file for the SVG`);
  if (logFile !== undefined && await Deno.realPath(path) === await Deno.realPath(logFile)) {
    throw new ArgsError(`${named} is the --log file: the SVG would replace it; write it elsewhere`);
  }
  if (!overwrite) {
    throw new ArgsError(
      `${named} already exists: pass --overwrite to replace it${given ? "" : ", or --svg FILE"}`,
    );
  }
}

/** The parameters of a model of `shapes`, a tied weight counted once. */
function parameterCount(shapes: ModelShapes): number {
  return shapes.params.filter((p) => !p.tiedTo).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
}

/** Print the model's lines of the summary: architecture, size, storage, linear layers, decoding. */
async function printModelSummary(loaded: Loaded, shapes: ModelShapes, total: number): Promise<void> {
  const { model, config } = loaded;
  console.log(
    `model     ${loaded.modelDir}: ${config.modelType} ${shapes.architecture} (${loaded.task})`,
  );
  console.log(
    `size      ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} heads, ` +
      `${total.toLocaleString("en-US")} parameters, ${shapes.linears.length} linear layers`,
  );
  console.log(`storage   ${storageSummary(model)}`);
  const names = [...new Set(shapes.linears.map((l) => l.path.replace(/\.\d+\./, ".N.")))];
  console.log(`linears   ${names.join(", ")}`);
  for (const line of await decoderLines(loaded.modelDir, model, loaded.tokenizer)) console.log(line);
}

/** Print the adapter's lines of the summary: its settings, its values and each adapted layer. */
function printAdapterSummary(
  adapterDir: string | undefined,
  a: AdapterConfig,
  peft: PeftModel,
  total: number,
): void {
  console.log(`adapter   ${adapterDir}: ${a.peftType} (${adapterSettings(a)})`);
  console.log(
    `          ${peft.layers.size} adapted layers, ${
      peft.adapterParameters().reduce((s, t) => s + t.size, 0)
    } ` +
      `adapter values + ${peft.savedParameters().reduce((s, t) => s + t.size, 0)} head values ` +
      `(${(100 * peft.trainableCount() / total).toFixed(3)}% of the model)`,
  );
  for (const [path, layer] of peft.layers) {
    console.log(
      `          ${path}: ${layer.outFeatures}×${layer.inFeatures}, ${
        layer.parameters().reduce((s, t) => s + t.size, 0)
      } values`,
    );
  }
}

/** The settings of an adapter that shape its update, as its adapter_config.json names them. */
function adapterSettings(a: AdapterConfig): string {
  return a.peftType === "SSH"
    ? `n ${a.n}, alpha ${a.alpha}, energy ratio ${a.energyRatio}, transform ${a.transform}, selection ${a.selection}`
    : a.peftType === "LORA"
    ? `r ${a.r}, lora_alpha ${a.loraAlpha}`
    : `${
      frequencyFraction(a) === null ? `n_frequency ${a.nFrequency}` : `alpha ${frequencyFraction(a)}`
    }, scaling ${a.scaling}`;
}

/** The flags of the heatmap of --layer. */
const HEATMAP_FLAGS = ["transform", "n", "energy-ratio", "seed", "max-cells"];

/**
 * Refuse the flags that would change nothing: the heatmap's without --layer, --svg and --overwrite
 * without --layer or --log, the model's without --model or --adapter.
 */
function refuseUnusedFlags(
  v: { layer?: string; log?: string; svg?: string; model?: string; adapter?: string },
  given: ReadonlySet<string>,
): void {
  if (!v.layer) refuseGiven(given, HEATMAP_FLAGS, "without --layer (flags of its energy heatmap)");
  if (v.svg && !v.layer && !v.log) {
    throw new ArgsError(`--svg names the SVG of --layer or --log: give one of them`);
  }
  if (!v.layer && !v.log) {
    refuseGiven(given, ["overwrite"], "without --layer or --log (it replaces their SVG)");
  }
  if (!v.model && !v.adapter) refuseGiven(given, ["task", "dtype"], "without --model or --adapter");
}

/** The SVG of a run log's training loss (per logged interval) and eval loss. */
export async function lossCurve(logPath: string): Promise<string> {
  const records = await readRunLog(await logFileOf(logPath));
  const num = (x: unknown) => (typeof x === "number" ? x : Number(x));
  const train = records.filter((r) => r.type === "train").map((r) =>
    [r.step, num(r.loss)] as [number, number]
  );
  const evals = records.filter((r) => r.type === "eval").map((r) =>
    [r.step, num(r.loss)] as [number, number]
  );
  if (train.length === 0 && evals.length === 0) {
    throw new Error(`${logPath}: no train or eval records to plot`);
  }
  const series: Series[] = [{ name: "train loss", points: train }];
  if (evals.length > 0) series.push({ name: "eval loss", points: evals, dots: true });
  const start = records.find((r) => r.type === "start");
  const title = start ? `${start.method} on ${start.data} (${start.task})` : logPath;
  return linePlotSvg(series, { title, xLabel: "optimiser step", yLabel: "loss" });
}

/**
 * The run log that `--log PATH` names: the file, or a run folder's log.jsonl. A folder without one is
 * a usage mistake; a file that is not there is an error (exit 1, as any file that cannot be read).
 */
function logFileOf(path: string): Promise<string> {
  return fileInFolder(
    path,
    "log.jsonl",
    "log",
    () => new ArgsError(`--log ${path} is a folder without log.jsonl: give a run's log.jsonl or its folder`),
  );
}

/**
 * What a decoder's generation depends on: its attention (heads, key/value heads, RoPE, sliding
 * window), its positions, its chat template and the tokens that end its text.
 */
async function decoderLines(dir: string, model: Model, tokenizer: Tokenizer | null): Promise<string[]> {
  const c = model.config;
  if (!model.newCache || !tokenizer || !("maxPositions" in c)) return []; // decoders keep a cache
  const parts = [`${c.numHeads} heads of ${c.headDim}`, `${c.maxPositions} positions`];
  if ("numKvHeads" in c) {
    parts.splice(1, 0, `${c.numKvHeads} key/value heads`, `RoPE ${c.rope.type} θ ${c.rope.theta}`);
    if (c.slidingWindow !== null) {
      const all = c.slidingLayers.length === c.numLayers;
      parts.push(
        `a sliding window of ${c.slidingWindow} keys in ${
          all ? "every layer" : `layers ${c.slidingLayers.join(", ")}`
        }`,
      );
    }
  }
  const template = await loadChatTemplate(dir, {}, tokenizer);
  const ends = endTokenIds(model, tokenizer);
  // a generated token's keys and values in every layer
  const perToken = c.numLayers * 2 * ("numKvHeads" in c ? c.numKvHeads : c.numHeads) * c.headDim;
  return [
    `attention ${parts.join(", ")}`,
    `kv cache  ${formatBytes(perToken * 2)} a token as f16, ${formatBytes(perToken * 4)} as f32 ` +
    `(${formatBytes(perToken * 2 * c.maxPositions)} as f16 at ${c.maxPositions} positions)`,
    `chat      ${template ? `template from ${template.source}` : "no chat template"}; ` +
    `text ends at ${
      ends.length
        ? ends.map((id) => `${id} ${JSON.stringify(tokenizer.decode([id], { skipSpecialTokens: false }))}`)
          .join(", ")
        : "no token"
    }`,
  ];
}
