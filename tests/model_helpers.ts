/**
 * Shared pieces of the model tests: fixture paths, batches, forward passes read back, the
 * float64 references, temporary model directories with a modified config or checkpoint, and one
 * training step of a fixture read back.
 * @module
 */
import { join } from "node:path";
import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import { type Method, type MethodOptions, prepareMethod } from "../lib/cli/method.ts";
import { batchLoss, type TaskName } from "../lib/train/tasks.ts";
import type { TrainBatch } from "../lib/train/batches.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { openCheckpoint, openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import type { Batch, Model } from "../lib/models/model.ts";
import {
  gpt2Reference,
  llamaReference,
  type ReferenceOutput,
  referenceWeights,
} from "../lib/models/reference.ts";
import { loadModel } from "../lib/models/load.ts";
import { modelShapes } from "../lib/models/shapes.ts";
import { loadAdapterInto } from "../lib/peft/apply.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import type { Gpt2Config, LlamaConfig } from "../lib/io/hf_config.ts";

/** tests/fixtures/models/<name>. */
export function fixtureModel(name: string): string {
  return new URL(`./fixtures/models/${name}`, import.meta.url).pathname;
}

/** A batch of ids [b, t] with an attention mask and optional labels. */
export function tokenBatch(
  gpu: Gpu,
  ids: Int32Array,
  b: number,
  t: number,
  opts: { mask?: Int32Array; labels?: Int32Array; nextTokenLabels?: boolean } = {},
): Batch {
  return {
    inputIds: Tensor.from(gpu, ids, [b, t]),
    inputIdsHost: ids,
    attentionMask: opts.mask,
    labels: opts.labels ? Tensor.from(gpu, opts.labels, opts.labels.length === b ? [b] : [b, t]) : undefined,
    nextTokenLabels: opts.nextTokenLabels,
  };
}

/** Run `model` on `batch` in eval mode without gradients; the outputs' values. */
export async function evalForward(
  model: Model,
  batch: Batch,
): Promise<{ logits: Float32Array; hidden: Float32Array; loss: number | null }> {
  const out = noGrad(() => tidy(() => model.forward(batch)));
  const [logits, hidden, loss] = await Promise.all([
    out.logits.toArray(),
    out.hidden.toArray(),
    out.loss?.item(),
  ]);
  out.logits.dispose();
  out.hidden.dispose();
  out.loss?.dispose();
  return { logits, hidden, loss: loss ?? null };
}

/** The float64 reference of the causal-LM checkpoint in `dir` on ids [b, t] with `mask`. */
export async function referenceForward(
  dir: string,
  ids: Int32Array,
  b: number,
  t: number,
  mask: Int32Array | null,
): Promise<ReferenceOutput> {
  const config = await loadHfConfig(dir);
  const weights = await referenceWeights(await openCheckpoint(dir), modelShapes(config));
  return config.modelType === "gpt2"
    ? gpt2Reference(config as Gpt2Config, weights, ids, b, t, mask)
    : llamaReference(config as LlamaConfig, weights, ids, b, t, mask);
}

/** Random ids in [0, vocab) from a small LCG (seeded). */
export function randomIds(n: number, vocab: number, seed: number): Int32Array {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

/** Values of `x` [rows, width] at the rows where `keep` is non-zero. */
export function keptRows(x: ArrayLike<number>, keep: Int32Array, width: number): Float64Array {
  const out: number[] = [];
  keep.forEach((k, r) => {
    if (k !== 0) { for (let j = 0; j < width; j++) out.push(x[r * width + j]); }
  });
  return Float64Array.from(out);
}

/**
 * A temporary copy of model directory `dir` (config.json and model.safetensors, tokenizer.json
 * when present), with config.json fields overridden by `config`. Remove it with Deno.remove.
 */
export async function tempModelDir(dir: string, config: Record<string, unknown> = {}): Promise<string> {
  const tmp = await Deno.makeTempDir({ prefix: "hartley-model-" });
  const json = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  await Deno.writeTextFile(join(tmp, "config.json"), JSON.stringify({ ...json, ...config }));
  for (const f of ["model.safetensors", "tokenizer.json"]) {
    try {
      await Deno.copyFile(join(dir, f), join(tmp, f));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return tmp;
}

/** The logits of `batch` from a fresh copy of the model in `modelDir` with the adapter saved in `adapterDir`. */
export async function reloadedLogits(
  gpu: Gpu,
  modelDir: string,
  adapterDir: string,
  batch: Batch,
): Promise<Float32Array> {
  const fresh = await loadModel(gpu, modelDir);
  try {
    await loadAdapterInto(fresh, adapterDir);
    return await noGrad(() => tidy(() => fresh.forward(batch).logits)).toArray();
  } finally {
    fresh.dispose();
  }
}

/** Rows of `parts` (each [rows, cols] f32) stacked in order. */
function stack(parts: Float32Array[], cols: number): TensorData {
  const rows = parts.reduce((n, p) => n + p.length / cols, 0);
  const data = new Float32Array(rows * cols);
  let at = 0;
  for (const p of parts) [data.set(p, at), at += p.length];
  return { dtype: "F32", shape: [rows, cols], data };
}

/**
 * The llama fixture as Phi-3: its q/k/v and gate/up weights stacked into qkv_proj and gate_up_proj,
 * config fields overridden, the llama reference outputs beside it. Remove it with Deno.remove.
 */
export async function phi3Dir(
  config: Record<string, unknown> = {},
  architecture = "Phi3ForCausalLM",
): Promise<string> {
  const dir = await tempModelDir(fixtureModel("llama"), {
    model_type: "phi3",
    architectures: [architecture],
    ...config,
  });
  await Deno.copyFile(
    join(fixtureModel("llama"), "reference.safetensors"),
    join(dir, "reference.safetensors"),
  );
  const file = await openSafetensors(join(fixtureModel("llama"), "model.safetensors"));
  const tensors: Record<string, TensorData> = {};
  const read = async (name: string) => new Float32Array(await file.readF32(name));
  for (const name of file.names) {
    if (/\.(q_proj|k_proj|v_proj|gate_proj|up_proj)\./.test(name)) continue;
    const { dtype, shape } = file.info(name);
    tensors[name] = { dtype, shape, data: await file.read(name) } as TensorData;
  }
  for (let l = 0; l < 2; l++) {
    const a = `model.layers.${l}.self_attn`, m = `model.layers.${l}.mlp`;
    const qkv = await Promise.all(["q", "k", "v"].map((x) => read(`${a}.${x}_proj.weight`)));
    tensors[`${a}.qkv_proj.weight`] = stack(qkv, 64);
    tensors[`${m}.gate_up_proj.weight`] = stack([
      await read(`${m}.gate_proj.weight`),
      await read(`${m}.up_proj.weight`),
    ], 64);
  }
  await writeSafetensors(join(dir, "model.safetensors"), tensors);
  return dir;
}

/**
 * One training step of `method` on fixture `name` over a [b, t] batch, with dropout when
 * `training`: the loss and every trainable gradient, read back.
 */
export async function trainingStep(
  name: string,
  task: TaskName,
  method: Method,
  dtype: "f32" | "q8" = "f32",
  [b, t]: [number, number] = [2, 8],
  training = false,
): Promise<{ loss: number; grads: Float32Array[] }> {
  const gpu = await getGpu();
  const model = await loadModel(gpu, fixtureModel(name), { task, dtype });
  try {
    const prepared = await prepareMethod(model, methodOptions(method, task));
    const params = prepared.groups.flatMap((g) => g.params.map((p) => p.tensor));
    for (const x of params) x.requiresGrad = true;
    const ids = Int32Array.from({ length: b * t }, (_, i) => (i * 37 + 5) % 500);
    const batch = {
      ids,
      attentionMask: new Int32Array(b * t).fill(1),
      labels: task === "seq-cls" ? Int32Array.from({ length: b }, (_, i) => i % 2) : ids,
      shape: [b, t] as [number, number],
      rows: Int32Array.from({ length: b }, (_, i) => i),
    };
    const loss = tidy(() => {
      model.train(training);
      const l = batchLoss(model, batch, task);
      l.backward();
      return l;
    });
    const out = { loss: await loss.item(), grads: await Promise.all(params.map((x) => x.grad!.toArray())) };
    for (const x of params) [x.grad?.dispose(), x.grad = null];
    return out;
  } finally {
    model.dispose();
  }
}

/** The options `train` would give `prepareMethod` for a fixture (small n and rank), with `changes`. */
export function methodOptions(
  method: Method,
  task: TaskName,
  changes: Partial<MethodOptions> = {},
): MethodOptions {
  return {
    method,
    task,
    n: 100,
    energyRatio: 0.7,
    alpha: 300,
    transform: "dht",
    selection: "layer",
    init: "normal",
    r: 4,
    loraAlpha: 8,
    loraDropout: 0,
    seed: 0,
    lr: 1e-3,
    headLr: 1e-3,
    weightDecay: 0,
    modelDir: "",
    ...changes,
  };
}

/** Two rows of four tokens with class labels (a classifier's train or evaluate batch). */
export const TWO_ROW_BATCH: TrainBatch = {
  ids: Int32Array.from([0, 5, 6, 2, 0, 7, 8, 2]),
  attentionMask: new Int32Array(8).fill(1),
  labels: Int32Array.from([0, 1]),
  shape: [2, 4],
  rows: Int32Array.from([0, 1]),
};
