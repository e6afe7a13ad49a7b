/**
 * What quantized frozen weights cost a model's outputs: the rel-L2 distance of each fixture
 * model's eval-mode logits (on its reference batch) with `--dtype` q8 or q4 from the f32 weights',
 * and the bytes its parameters take.
 *
 *     deno run -A bench/quant_error.ts
 * @module
 */
import { getGpu } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { formatBytes } from "../lib/models/storage.ts";
import type { WeightDtype } from "../lib/nn/load.ts";
import { noGrad, tidy } from "../lib/tensor/mod.ts";
import { table } from "./stats.ts";

const gpu = await getGpu();
const fixtures = new URL("../tests/fixtures/models/", import.meta.url).pathname;

/** Eval-mode logits of the fixture's reference batch. */
async function logits(model: Model, dir: string): Promise<Float32Array> {
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  const read = tidy(() => noGrad(() => ({ v: model.forward(batch).logits.readLater() }))).v;
  gpu.stream.flush();
  return await read;
}

function relL2(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  a.forEach((x, i) => [num += (x - b[i]) ** 2, den += b[i] ** 2]);
  return Math.sqrt(num / den);
}

const rows: string[][] = [];
for (const family of ["gpt2", "llama", "bert", "roberta"]) {
  const dir = `${fixtures}${family}`;
  const load = (dtype: WeightDtype) => loadModel(gpu, dir, { dtype });
  const plain = await load("f32");
  const want = await logits(plain, dir);
  const bytes = (m: Model) => formatBytes([...m.parameters.values()].reduce((s, t) => s + t.bytes, 0));
  rows.push([family, "f32", bytes(plain), "0"]);
  plain.dispose();
  for (const dtype of ["q8", "q4"] as const) {
    const model = await load(dtype);
    rows.push([family, dtype, bytes(model), relL2(await logits(model, dir), want).toExponential(2)]);
    model.dispose();
  }
}
console.log(`quantized weights on the test fixtures (random normal weights), ${gpu.description}`);
console.log(table(["model", "weights", "parameters", "logits rel-L2 from f32"], rows));
