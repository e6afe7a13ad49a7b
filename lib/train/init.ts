/**
 * Random initialisation of a model from its config alone, as transformers' `_init_weights`
 * does for the supported families, written as a Hugging Face directory (config.json,
 * model.safetensors, tokenizer.json) that `loadModel` reads like any other:
 * - linear and embedding weights ~ N(0, initializer_range²) (default 0.02);
 * - GPT-2's residual projections (`attn.c_proj`, `mlp.c_proj`) ~ N(0, (0.02/√(2·n_layer))²),
 *   as GPT-2's paper and transformers scale them;
 * - norm weights 1, every bias 0.
 * Values come from the seeded {@link Prng} in parameter order, so a seed gives the same model
 * on every machine.
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { type HfConfig, parseHfConfig } from "../io/hf_config.ts";
import { type TensorData, writeSafetensors } from "../io/safetensors_write.ts";
import { modelShapes, type ParamShape } from "../models/shapes.ts";
import { initKind } from "../nn/init.ts";
import { Prng } from "../spectral/prng.ts";

/** The standard deviation of a randomly initialised parameter (see the module doc). */
export function initStd(key: string, config: HfConfig): number {
  const range = typeof config.raw.initializer_range === "number" ? config.raw.initializer_range : 0.02;
  return config.modelType === "gpt2" && /\.c_proj\.weight$/.test(key)
    ? range / Math.sqrt(2 * config.numLayers)
    : range;
}

/** Initial values of one parameter (see the module doc). */
export function initParam(p: ParamShape, config: HfConfig, rng: Prng): Float32Array {
  const n = p.shape.reduce((a, b) => a * b, 1);
  const kind = initKind(p.key);
  if (kind !== "random") return new Float32Array(n).fill(kind === "ones" ? 1 : 0);
  const std = initStd(p.key, config);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
  return out;
}

/** Every stored parameter of `config`'s `architecture`, randomly initialised. */
export function randomWeights(
  config: HfConfig,
  architecture: string,
  seed: number,
): Record<string, TensorData> {
  const shapes = modelShapes(config, { architecture });
  const rng = new Prng(seed);
  const out: Record<string, TensorData> = {};
  for (const p of shapes.params) {
    if (p.tiedTo) continue;
    out[p.key] = { dtype: "F32", shape: p.shape, data: initParam(p, config, rng) };
  }
  return out;
}

/**
 * Write a randomly initialised model directory: `configJson` (a config.json object) as
 * config.json, the weights of its `architectures[0]`, and a copy of `tokenizerPath`.
 */
export async function writeRandomModel(
  dir: string,
  configJson: Record<string, unknown>,
  tokenizerPath: string | null,
  seed: number,
): Promise<HfConfig> {
  const configPath = join(dir, "config.json");
  const config = parseHfConfig(configJson, configPath);
  const architecture = config.architectures[0];
  if (!architecture) {
    throw new Error(`${configPath}: "architectures" must name the model class to initialise`);
  }
  const weights = randomWeights(config, architecture, seed); // a config it cannot build writes nothing
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensors(join(dir, "model.safetensors"), weights, { format: "pt" });
  if (tokenizerPath) await Deno.copyFile(tokenizerPath, join(dir, "tokenizer.json"));
  await writeFileAtomic(configPath, JSON.stringify(configJson, null, 2) + "\n");
  return config;
}
