/**
 * Shared pieces of the encoder model tests (BERT, RoBERTa, ViT): parity against a fixture
 * directory, a train-mode backward pass, and copies of a fixture model with an edited
 * checkpoint (for the wrong-input errors).
 * @module
 */
import { join } from "node:path";
import type { Gpu } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadModel } from "../lib/models/load.ts";
import type { Batch, Model } from "../lib/models/model.ts";
import { modelParity, referenceBatch } from "../lib/models/parity.ts";
import { SpectralLayer } from "../lib/peft/spectral_layer.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { assert, assertClose, assertEquals, relL2 } from "./assert.ts";

/** Assert that every reference output of `dir` (logits, loss, hidden_last) is within `tol`. */
export async function expectParity(gpu: Gpu, dir: string, tol: number, dtype: "f32" | "f16" = "f32") {
  const result = await modelParity(gpu, dir, { dtype });
  assertEquals(result.rows.map((r) => r.output), ["logits", "loss", "hidden_last"]);
  for (const r of result.rows) {
    assert(r.relL2 <= tol, `${dir} ${r.output} (${dtype}): rel-L2 ${r.relL2.toExponential(3)} > ${tol}`);
  }
}

/** The fixture's inputs (a {@link Batch}) and its reference `name` tensor. */
export async function fixtureBatch(gpu: Gpu, dir: string) {
  const ref = await openSafetensors(join(dir, "reference.safetensors"));
  return { batch: await referenceBatch(gpu, ref), ref };
}

/** Every value finite and at least one non-zero. */
export async function expectUsefulGrad(t: Tensor, what: string): Promise<void> {
  assert(t.grad, `${what}: no gradient`);
  const g = await t.grad.toArray();
  assert(g.every(Number.isFinite), `${what}: non-finite gradient`);
  assert(g.some((v) => v !== 0), `${what}: gradient is all zeros`);
}

/**
 * Load `dir`, make `trainable` parameters require gradients, run the fixture batch in train
 * mode and backward from the loss; returns the model, the train-mode loss and the eval loss
 * (computed first, under noGrad).
 */
export async function trainStep(gpu: Gpu, dir: string, trainable: readonly string[]) {
  const model = await loadModel(gpu, dir);
  const { batch } = await fixtureBatch(gpu, dir);
  const evalLoss = noGrad(() => tidy(() => model.forward(batch).loss!));
  for (const key of trainable) {
    const p = model.parameters.get(key);
    assert(p, `no parameter ${key}`);
    p.requiresGrad = true;
  }
  model.train(true);
  const loss = tidy(() => model.forward(batch).loss!);
  assert(loss.requiresGrad, "train-mode loss does not require a gradient");
  const values = [await evalLoss.item(), await loss.item()];
  loss.backward();
  evalLoss.dispose();
  loss.dispose();
  return { model, batch, evalLoss: values[0], trainLoss: values[1] };
}

/** Dispose a model and the tensors of a batch. */
export function release(model: Model, batch: object): void {
  model.dispose();
  for (const t of Object.values(batch)) if (t instanceof Tensor) t.dispose();
}

/**
 * A temporary copy of the model directory `dir` (its files; config.json optionally changed by
 * `config`) whose model.safetensors holds the fixture's tensors after `edit`. Remove it with
 * `Deno.remove(path, { recursive: true })`.
 */
export async function editedModel(
  dir: string,
  edit: (tensors: Record<string, TensorData>) => void,
  config?: (json: Record<string, unknown>) => void,
): Promise<string> {
  const src = await openSafetensors(join(dir, "model.safetensors"));
  const tensors: Record<string, TensorData> = {};
  for (const name of src.names) {
    const info = src.info(name);
    tensors[name] = { dtype: info.dtype, shape: info.shape, data: await src.read(name) };
  }
  edit(tensors);
  const out = await Deno.makeTempDir({ prefix: "hartley-model-" });
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name !== "config.json" && e.name !== "model.safetensors") {
      await Deno.copyFile(join(dir, e.name), join(out, e.name));
    }
  }
  const json = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  config?.(json);
  await Deno.writeTextFile(join(out, "config.json"), JSON.stringify(json));
  await writeSafetensors(join(out, "model.safetensors"), tensors);
  return out;
}

/** Load `dir` expecting failure; returns the error message. */
export async function loadError(gpu: Gpu, dir: string): Promise<string> {
  try {
    const m = await loadModel(gpu, dir);
    m.dispose();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error(`loading ${dir} succeeded; expected an error`);
}

/**
 * Check the gradient of the eval-mode loss with respect to parameter `key` against a central
 * difference along the gradient's own direction: (L(w + εĝ) − L(w − εĝ)) / 2ε ≈ ‖g‖, with the
 * step ε = min(0.3, 1e-3 / ‖g‖) (a loss change well above f32 rounding, small enough for the
 * curvature not to matter). The parameter is restored afterwards; returns both numbers.
 */
export async function directionalCheck(
  gpu: Gpu,
  model: Model,
  batch: Batch,
  key: string,
): Promise<{ analytic: number; numeric: number }> {
  const p = model.parameters.get(key);
  assert(p && p.dtype === "f32", `no f32 parameter ${key}`);
  model.train(false);
  p.requiresGrad = true;
  p.grad?.dispose();
  p.grad = null;
  const loss = tidy(() => model.forward(batch).loss!);
  loss.backward();
  loss.dispose();
  const g = await p.grad!.toArray(), w = await p.toArray();
  const norm = Math.sqrt(g.reduce((s, v) => s + v * v, 0));
  const eps = Math.min(0.3, 1e-3 / norm);
  const lossAt = async (step: number) => {
    gpu.stream.write(p.buffer, Float32Array.from(w, (v, i) => v + step * g[i] / norm));
    const l = noGrad(() => tidy(() => model.forward(batch).loss!));
    const value = await l.item();
    l.dispose();
    return value;
  };
  const numeric = (await lossAt(eps) - await lossAt(-eps)) / (2 * eps);
  gpu.stream.write(p.buffer, w);
  return { analytic: norm, numeric };
}

/** The last hidden state at the padded positions of the fixture batch of `dir` matches PyTorch's. */
export async function expectPaddedHiddenParity(gpu: Gpu, dir: string): Promise<void> {
  const model = await loadModel(gpu, dir);
  const { batch, ref } = await fixtureBatch(gpu, dir);
  const hidden = noGrad(() => tidy(() => model.forward(batch).hidden));
  const ours = await hidden.toArray(), expected = await ref.readF32("hidden_last");
  const [b, t, h] = hidden.shape, mask = batch.attentionMask!;
  const padded = Array.from({ length: b * t }, (_, p) => p).filter((p) => mask[p] === 0);
  assert(padded.length > 0, "the fixture has no padded positions");
  const pick = (x: Float32Array) => padded.flatMap((p) => Array.from(x.subarray(p * h, (p + 1) * h)));
  assertClose(pick(ours), pick(expected), 1e-4, "padded positions");
  hidden.dispose();
  release(model, batch);
}

/** {@link directionalCheck} of each of `keys` on the fixture model in `dir` (relative tolerance 5e-3). */
export async function expectGradientsMatchDifferences(gpu: Gpu, dir: string, keys: string[]): Promise<void> {
  const model = await loadModel(gpu, dir);
  const { batch } = await fixtureBatch(gpu, dir);
  for (const key of keys) {
    const { analytic, numeric } = await directionalCheck(gpu, model, batch, key);
    assertClose([numeric], [analytic], 5e-3, key);
  }
  release(model, batch);
}

/**
 * The fixture's SSH references of `dir` (SPEC §1.3, α from reference.json, on every target):
 * for each transform, attach a {@link SpectralLayer} with the stored positions and
 * coefficients to each target Linear, and assert the logits, the loss and ∂loss/∂coef match
 * within `tol`. Returns the largest rel-L2 error seen.
 */
export async function expectSshReferences(gpu: Gpu, dir: string, tol: number): Promise<number> {
  const info = JSON.parse(await Deno.readTextFile(join(dir, "reference.json")));
  const model = await loadModel(gpu, dir);
  const { batch, ref } = await fixtureBatch(gpu, dir);
  let worst = 0;
  const check = (actual: ArrayLike<number>, expected: ArrayLike<number>, what: string) => {
    worst = Math.max(worst, relL2(actual, expected));
    assertClose(actual, expected, tol, what);
  };
  try {
    for (const transform of ["dht", "dht2d", "dft"] as const) {
      const layers = new Map<string, SpectralLayer>();
      for (const path of info.targets as string[]) {
        const linear = model.linears.get(path);
        assert(linear, `no linear layer ${path}`);
        linear.adapter = new SpectralLayer(gpu, "ssh", {
          outFeatures: linear.outFeatures,
          inFeatures: linear.inFeatures,
          positions: Int32Array.from(await ref.readF32(`ssh.${path}.indices`)),
          coef: await ref.readF32(`ssh.${path}.coef`),
          transform,
          alpha: info.alpha,
          path,
        });
        layers.set(path, linear.adapter as SpectralLayer);
      }
      const out = tidy(() => {
        const o = model.forward(batch);
        return { logits: o.logits, loss: o.loss! };
      });
      out.loss.backward();
      check(await out.logits.toArray(), await ref.readF32(`${transform}.logits`), `${transform} logits`);
      check([await out.loss.item()], await ref.readF32(`${transform}.loss`), `${transform} loss`);
      for (const [path, layer] of layers) {
        const g = await layer.coef.grad!.toArray();
        check(g, await ref.readF32(`${transform}.${path}.grad`), `${transform} ${path} grad`);
        model.linears.get(path)!.adapter = null;
        layer.dispose();
      }
      out.logits.dispose();
      out.loss.dispose();
    }
  } finally {
    release(model, batch);
  }
  return worst;
}

/**
 * The BERT fixture as a DistilBertForSequenceClassification directory: its layers renamed, token
 * type 0's row folded into the position table (so it computes BERT's hidden states), a random head
 * of 3 labels. Remove it with `Deno.remove(path, { recursive: true })`.
 */
export function asDistilBert(): Promise<string> {
  return editedModel(
    "tests/fixtures/models/bert",
    (tensors) => {
      const renamed: Record<string, TensorData> = {};
      for (const [key, t] of Object.entries(tensors)) {
        if (!key.startsWith("bert.") || key.includes("pooler") || key.includes("token_type")) continue;
        const name = key.replace(/^bert\.encoder\./, "distilbert.transformer.").replace(
          /^bert\./,
          "distilbert.",
        )
          .replace(".attention.self.query", ".attention.q_lin").replace(
            ".attention.self.key",
            ".attention.k_lin",
          )
          .replace(".attention.self.value", ".attention.v_lin").replace(
            ".attention.output.dense",
            ".attention.out_lin",
          )
          .replace(".attention.output.LayerNorm", ".sa_layer_norm").replace(
            ".intermediate.dense",
            ".ffn.lin1",
          )
          .replace(".output.dense", ".ffn.lin2").replace(".output.LayerNorm", ".output_layer_norm");
        renamed[name] = t;
      }
      // BERT adds token type 0's row to every position: DistilBERT's positions hold the sum
      const types = tensors["bert.embeddings.token_type_embeddings.weight"].data as Float32Array;
      const pos = renamed["distilbert.embeddings.position_embeddings.weight"];
      const width = pos.shape[1];
      pos.data = Float32Array.from(pos.data as Float32Array, (v, i) => v + types[i % width]);
      const rng = new Prng(5);
      const normal = (n: number) => Float32Array.from({ length: n }, () => rng.normal() * 0.2);
      renamed["pre_classifier.weight"] = { dtype: "F32", shape: [width, width], data: normal(width * width) };
      renamed["pre_classifier.bias"] = { dtype: "F32", shape: [width], data: normal(width) };
      renamed["classifier.weight"] = { dtype: "F32", shape: [3, width], data: normal(3 * width) };
      renamed["classifier.bias"] = { dtype: "F32", shape: [3], data: normal(3) };
      for (const key of Object.keys(tensors)) delete tensors[key];
      Object.assign(tensors, renamed);
    },
    (json) => {
      const bert = { ...json };
      for (const key of Object.keys(json)) delete json[key];
      Object.assign(json, {
        architectures: ["DistilBertForSequenceClassification"],
        model_type: "distilbert",
        activation: bert.hidden_act,
        dim: bert.hidden_size,
        n_layers: bert.num_hidden_layers,
        n_heads: bert.num_attention_heads,
        hidden_dim: bert.intermediate_size,
        max_position_embeddings: bert.max_position_embeddings,
        vocab_size: bert.vocab_size,
        pad_token_id: 0,
        dropout: 0.1,
        attention_dropout: 0.1,
        seq_classif_dropout: 0.2,
        id2label: { 0: "a", 1: "b", 2: "c" },
      });
    },
  );
}
