/**
 * `hartley inspect`: a model and adapter summary; with `--layer`, an SVG heatmap of a
 * layer's Hartley energy T(W)² (log scale, block maxima for big layers) with SSH's chosen
 * positions outlined (the adapter's, or those SSH would choose with --n / --energy-ratio),
 * like the paper's Figure 3; with `--log`, an SVG loss curve of a run log.
 * @module
 */
import { getGpu } from "../gpu/mod.ts";
import { readF32 } from "../gpu/buffers.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { fileInFolder } from "../io/paths.ts";
import { frequencyFraction } from "../peft/config.ts";
import { loadAdapter } from "../peft/files.ts";
import { shapesOfModel } from "../peft/model_shapes.ts";
import { selectLayerPositions, withF32Weight } from "../peft/ssh.ts";
import { encodeEnergy, positionSpace } from "../spectral/select.ts";
import { type Transform, TRANSFORMS } from "../spectral/transforms.ts";
import { readRunLog } from "../train/log.ts";
import { type TaskName, TASKS } from "../train/tasks.ts";
import { heatmapSvg, linePlotSvg, type Series } from "../viz/svg.ts";
import { ArgsError, type CommandSpec, DEFAULT_MODEL, DTYPE_FLAG, refuseGiven, withArgs } from "./args.ts";
import { formatBytes, storageSummary } from "../models/storage.ts";
import type { WeightDtype } from "../nn/load.ts";
import { loadForUse } from "./load.ts";
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
  seed: { type: "integer", default: 0, min: 0, help: "seed of the random share of positions" },
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
    if (v.svg) await checkOutputFolder("svg", v.svg);
    if (v.svg && (await Deno.stat(v.svg).catch(() => null))?.isDirectory) {
      throw new ArgsError(`--svg ${v.svg} is a directory: give a file for the SVG`);
    }
    if (v.log) {
      const path = v.svg && !v.layer ? v.svg : "loss.svg";
      await writeFileAtomic(path, await lossCurve(v.log));
      console.log(`wrote ${path} (loss curve of ${v.log})`);
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
    const { model, config, peft } = loaded;
    try {
      const shapes = shapesOfModel(model);
      const total = shapes.params.filter((p) => !p.tiedTo).reduce(
        (s, p) => s + p.shape.reduce((a, b) => a * b, 1),
        0,
      );
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
      if (peft && loaded.adapterConfig) {
        const a = loaded.adapterConfig;
        const detail = a.peftType === "SSH"
          ? `n ${a.n}, alpha ${a.alpha}, energy ratio ${a.energyRatio}, transform ${a.transform}, selection ${a.selection}`
          : a.peftType === "LORA"
          ? `r ${a.r}, lora_alpha ${a.loraAlpha}`
          : `${
            frequencyFraction(a) === null ? `n_frequency ${a.nFrequency}` : `alpha ${frequencyFraction(a)}`
          }, scaling ${a.scaling}`;
        console.log(`adapter   ${v.adapter}: ${a.peftType} (${detail})`);
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
      if (!v.layer) return 0;
      const paths = [...model.linears.keys()];
      const hits = paths.filter((p) => p === v.layer || p.endsWith("." + v.layer));
      if (hits.length !== 1) {
        throw new ArgsError(
          `--layer ${v.layer} ${
            hits.length === 0 ? "matches no linear layer" : `matches ${hits.length} layers`
          }; ` +
            `layers: ${paths.slice(0, 12).join(", ")}${paths.length > 12 ? ", ..." : ""}`,
        );
      }
      const lin = model.linears.get(hits[0])!;
      const ssh = loaded.adapterConfig?.peftType === "SSH" ? loaded.adapterConfig : null;
      const transform = (v.transform ?? ssh?.transform ?? "dht") as Transform;
      const m = lin.outFeatures, nIn = lin.inFeatures;
      const energy = await withF32Weight(lin, async (w) => {
        const buf = encodeEnergy(gpu, transform, w, m, nIn, { transposed: lin.layout === "in_out" });
        try {
          return await readF32(gpu, buf, m * nIn);
        } finally {
          gpu.pool.release(buf);
        }
      });
      let positions: Int32Array;
      let marksLabel: string;
      if (v.adapter && peft?.layers.has(lin.path) && loaded.adapterConfig?.peftType !== "LORA") {
        const adapter = await loadAdapter(v.adapter, { shapes });
        const mod = adapter.modules.get(lin.path) as { indices: Int32Array | null } | undefined;
        positions = mod?.indices ?? new Int32Array(0);
        marksLabel = `adapter positions (${positions.length / 2})`;
      } else {
        positions = await selectLayerPositions(gpu, lin, {
          n: Math.min(v.n, positionSpace(transform, m, nIn).size),
          energyRatio: v["energy-ratio"],
          transform,
          seed: v.seed,
        });
        marksLabel = `SSH n=${positions.length / 2}, δ=${v["energy-ratio"]}`;
      }
      const marks: [number, number][] = [];
      for (let i = 0; i < positions.length; i += 2) marks.push([positions[i], positions[i + 1]]);
      const svg = heatmapSvg(energy, m, nIn, {
        title: `${lin.path}: ${transform} energy T(W)², log scale (${m}×${nIn}, out×in)`,
        xLabel: "in (column v)",
        yLabel: "out (row u)",
        marks,
        marksLabel,
        maxCells: v["max-cells"],
      });
      const path = v.svg ?? "energy.svg";
      await writeFileAtomic(path, svg);
      console.log(`wrote ${path} (${lin.path} ${m}×${nIn}, ${marks.length} positions marked)`);
      return 0;
    } finally {
      peft?.detach();
      model.dispose();
    }
  });
}

/** The flags of the heatmap of --layer. */
const HEATMAP_FLAGS = ["transform", "n", "energy-ratio", "seed", "max-cells"];

/**
 * Refuse the flags that would change nothing: the heatmap's without --layer, --svg without --layer
 * or --log, the model's without --model or --adapter.
 */
function refuseUnusedFlags(
  v: { layer?: string; log?: string; svg?: string; model?: string; adapter?: string },
  given: ReadonlySet<string>,
): void {
  if (!v.layer) refuseGiven(given, HEATMAP_FLAGS, "without --layer (flags of its energy heatmap)");
  if (v.svg && !v.layer && !v.log) {
    throw new ArgsError(`--svg names the SVG of --layer or --log: give one of them`);
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
