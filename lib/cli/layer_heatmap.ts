/**
 * The SVG heatmap of `hartley inspect --layer`: a linear layer's Hartley energy T(W)² (log
 * scale, block maxima for big layers) with SSH's chosen positions outlined (the adapter's, or
 * those SSH would choose with --n / --energy-ratio), like the paper's Figure 3.
 * @module
 */
import type { Gpu } from "../gpu/mod.ts";
import { readF32 } from "../gpu/buffers.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import type { ModelShapes } from "../models/shapes.ts";
import type { Model } from "../models/model.ts";
import type { Linear } from "../nn/linear.ts";
import { loadAdapter } from "../peft/files.ts";
import { selectLayerPositions, withF32Weight } from "../peft/ssh.ts";
import { encodeEnergy, positionSpace } from "../spectral/select.ts";
import type { Transform } from "../spectral/transforms.ts";
import { heatmapSvg } from "../viz/svg.ts";
import { ArgsError } from "./args.ts";
import type { Loaded } from "./load.ts";

/** What the heatmap of --layer shows, and where it goes. */
export interface HeatmapOptions {
  /** The layer: its path or a unique suffix of it (--layer). */
  layer: string;
  /** The adapter directory given (--adapter): its positions of the layer are marked. */
  adapterDir?: string;
  /** The transform given (--transform); else the SSH adapter's, else dht. */
  transform?: Transform;
  /** Positions to mark without an adapter's (--n), the share by energy (--energy-ratio) and the seed. */
  n: number;
  energyRatio: number;
  seed: number;
  /** Heatmap cells per side (--max-cells). */
  maxCells: number;
  /** The SVG file to write. */
  svg: string;
}

/** Positions outlined on the heatmap, as (row, column) pairs, and the legend that says whose. */
interface Marks {
  positions: Int32Array;
  label: string;
}

/** Write the energy heatmap of `opts.layer` of the loaded model to `opts.svg` and say so. */
export async function writeLayerHeatmap(
  gpu: Gpu,
  loaded: Loaded,
  shapes: ModelShapes,
  opts: HeatmapOptions,
): Promise<void> {
  const lin = findLinear(loaded.model, opts.layer);
  const ssh = loaded.adapterConfig?.peftType === "SSH" ? loaded.adapterConfig : null;
  const transform = opts.transform ?? ssh?.transform ?? "dht";
  const m = lin.outFeatures, nIn = lin.inFeatures;
  const energy = await layerEnergy(gpu, lin, transform);
  const { positions, label } = await markedPositions(gpu, lin, transform, loaded, shapes, opts);
  const marks: [number, number][] = [];
  for (let i = 0; i < positions.length; i += 2) marks.push([positions[i], positions[i + 1]]);
  const svg = heatmapSvg(energy, m, nIn, {
    title: `${lin.path}: ${transform} energy T(W)², log scale (${m}×${nIn}, out×in)`,
    xLabel: "in (column v)",
    yLabel: "out (row u)",
    marks,
    marksLabel: label,
    maxCells: opts.maxCells,
  });
  await writeFileAtomic(opts.svg, svg);
  console.error(`wrote ${opts.svg} (${lin.path} ${m}×${nIn}, ${marks.length} positions marked)`);
}

/** The linear layer whose path is `layer` or ends with "." + `layer`; an ArgsError unless exactly one. */
function findLinear(model: Model, layer: string): Linear {
  const paths = [...model.linears.keys()];
  const hits = paths.filter((p) => p === layer || p.endsWith("." + layer));
  if (hits.length !== 1) {
    throw new ArgsError(
      `--layer ${layer} ${
        hits.length === 0 ? "matches no linear layer" : `matches ${hits.length} layers`
      }; ` +
        `layers: ${paths.slice(0, 12).join(", ")}${paths.length > 12 ? ", ..." : ""}`,
    );
  }
  return model.linears.get(hits[0])!;
}

/** The energy T(W)² of `lin`'s weight under `transform`, out × in, row-major. */
async function layerEnergy(gpu: Gpu, lin: Linear, transform: Transform): Promise<Float32Array> {
  const m = lin.outFeatures, nIn = lin.inFeatures;
  return await withF32Weight(lin, async (w) => {
    const buf = encodeEnergy(gpu, transform, w, m, nIn, { transposed: lin.layout === "in_out" });
    try {
      return await readF32(gpu, buf, m * nIn);
    } finally {
      gpu.pool.release(buf);
    }
  });
}

/**
 * The positions to outline: those of the adapter given when it adapts `lin` with positions of
 * its own (SSH, FourierFT; LoRA has none), else those SSH would choose with the options.
 */
async function markedPositions(
  gpu: Gpu,
  lin: Linear,
  transform: Transform,
  loaded: Loaded,
  shapes: ModelShapes,
  opts: HeatmapOptions,
): Promise<Marks> {
  if (opts.adapterDir && loaded.peft?.layers.has(lin.path) && loaded.adapterConfig?.peftType !== "LORA") {
    const adapter = await loadAdapter(opts.adapterDir, { shapes });
    const mod = adapter.modules.get(lin.path) as { indices: Int32Array | null } | undefined;
    const positions = mod?.indices ?? new Int32Array(0);
    return { positions, label: `adapter positions (${positions.length / 2})` };
  }
  const positions = await selectLayerPositions(gpu, lin, {
    n: Math.min(opts.n, positionSpace(transform, lin.outFeatures, lin.inFeatures).size),
    energyRatio: opts.energyRatio,
    transform,
    seed: opts.seed,
  });
  return { positions, label: `SSH n=${positions.length / 2}, δ=${opts.energyRatio}` };
}
