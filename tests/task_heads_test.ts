// Task heads through train and eval: a pooler new to the checkpoint under --method head, entity
// scores of a kept head with placeholder tag names, --new-head on a regression config, and JSONL
// pixel arrays resized as transformers resizes them.
import { getGpu } from "../lib/gpu/mod.ts";
import type { ImageProcessorConfig } from "../lib/io/image.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadModel } from "../lib/models/load.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { readImageData } from "../lib/train/image_data.ts";
import { type ImageExample, scoresEntities } from "../lib/train/tasks.ts";
import { prepareMethod } from "../lib/cli/method.ts";
import { assert, assertClose, assertEquals, assertRejects } from "./assert.ts";
import { fixtureModel, methodOptions, tempModelDir } from "./model_helpers.ts";
import { runCli, withTempDir, writeToyData } from "./train_helpers.ts";

/**
 * A temporary copy of the BERT fixture with config.json fields overridden by `config`, its
 * checkpoint without the tensors `drop` names and with `add`'s. Remove it with Deno.remove.
 */
async function bertVariant(
  config: Record<string, unknown>,
  drop: (key: string) => boolean = () => false,
  add: Record<string, TensorData> = {},
): Promise<string> {
  const dir = await tempModelDir(fixtureModel("bert"), config);
  const file = await openSafetensors(`${dir}/model.safetensors`);
  const kept: Record<string, TensorData> = {};
  for (const k of file.names.filter((k) => !drop(k))) {
    const { dtype, shape } = file.info(k);
    kept[k] = { dtype, shape, data: await file.read(k) };
  }
  await writeSafetensors(`${dir}/model.safetensors`, { ...kept, ...add });
  return dir;
}

/** The values of tensor `key` in the model directory `dir`'s checkpoint, or null without it. */
async function savedTensor(dir: string, key: string): Promise<Float32Array | null> {
  const file = await openSafetensors(`${dir}/model.safetensors`);
  return file.names.includes(key) ? await file.readF32(key) : null;
}

/** `eval --json` of `args`; it must succeed. */
async function evalJson(args: string[]): Promise<Record<string, number>> {
  const r = await runCli(["eval", ...args, "--json"]);
  assertEquals(r.code, 0, r.err);
  return JSON.parse(r.out);
}

Deno.test("train --method head on a BERT checkpoint without a pooler trains and saves the new pooler (model/, best/; resumed exactly, q8 backbone)", async () => {
  const model = await bertVariant(
    { architectures: ["BertForMaskedLM"] },
    (k) => k.startsWith("bert.pooler.") || k.startsWith("classifier."),
  );
  try {
    await withTempDir("hartley_head_pooler_", async (dir) => {
      const data = await writeToyData(dir, 16);
      // a quantized backbone: the pooler, which trains, stays f32 across --resume too
      const train = (out: string, extra: string[] = []) =>
        runCli([
          "train",
          ...["--model", model, "--data", data, "--eval-data", data, "--method", "head", "--dtype", "q8"],
          ...["--steps", "2", "--eval-every", "1", "--save-best", "--batch-size", "8", "--seq-len", "12"],
          ...["--out", out, "--quiet", ...extra],
        ]);
      const whole = await train(`${dir}/whole`);
      assertEquals(whole.code, 0, whole.err);
      const out = `${dir}/run`;
      const first = await train(out, ["--stop-at", "1"]);
      assertEquals(first.code, 0, first.err);
      const run = await runCli(["train", "--resume", "--out", out, "--quiet"]);
      assertEquals(run.code, 0, run.err);
      const bytes = (run: string) => Deno.readFile(`${run}/model/model.safetensors`);
      assertEquals(
        await bytes(out),
        await bytes(`${dir}/whole`),
        "the resumed run's model and the whole run's",
      );
      const held = run.err.match(/held-out: loss ([\d.]+)/);
      assert(held, run.err);
      // the pooler starts as loadModel initialises it (seed 0), and trains
      const gpu = await getGpu();
      const start = await loadModel(gpu, model, { task: "seq-cls", numLabels: 2, seed: 0 });
      const initial = await start.parameters.get("bert.pooler.dense.weight")!.toArray();
      start.dispose();
      const trained = await savedTensor(`${out}/model`, "bert.pooler.dense.weight");
      assert(trained, `${out}/model lacks the pooler`);
      assert(trained.some((x, i) => x !== initial[i]), "the pooler was not trained");
      assert(await savedTensor(`${out}/best/model`, "bert.pooler.dense.weight"), "best/ lacks the pooler");
      // eval reads the weights the run measured
      const evalArgs = ["--data", data, "--seq-len", "12", "--dtype", "q8"];
      const result = await evalJson(["--model", `${out}/model`, ...evalArgs]);
      assertClose([result.loss], [Number(held[1])], 1e-4, "eval of model/ and the run's last evaluation");
      await evalJson(["--model", `${out}/best/model`, ...evalArgs]);
    });
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});

Deno.test("prepareMethod head: a parameter new to the checkpoint trains when its module is named, else is refused", async () => {
  const model = await bertVariant({}, (k) => k.startsWith("bert.pooler."));
  const gpu = await getGpu();
  const loaded = await loadModel(gpu, model, { task: "seq-cls" });
  try {
    await assertRejects(
      () => prepareMethod(loaded, methodOptions("head", "seq-cls")),
      Error,
      `method head: "bert.pooler.dense.weight" is new (the checkpoint lacks it) but would not be trained`,
    );
    const prepared = await prepareMethod(
      loaded,
      methodOptions("head", "seq-cls", { headModules: ["bert.pooler"] }),
    );
    const names = prepared.groups.flatMap((g) => g.params.map((p) => p.name));
    assertEquals(names.sort(), [
      "bert.pooler.dense.bias",
      "bert.pooler.dense.weight",
      "classifier.bias",
      "classifier.weight",
    ]);
  } finally {
    loaded.dispose();
    await Deno.remove(model, { recursive: true });
  }
});

Deno.test("scoresEntities: entity tags with a kept head's placeholders (LABEL_i) left out", () => {
  assert(scoresEntities(["O", "B-PER", "I-PER", "LABEL_3", "LABEL_4"]), "placeholders past the data's tags");
  assert(scoresEntities(["O", "B-PER", "I-PER"]), "the data's tags");
  assert(!scoresEntities(["LABEL_0", "LABEL_1"]), "placeholders alone name no entities");
  assert(!scoresEntities(["NN", "VB", "LABEL_2"]), "part-of-speech tags");
  assert(!scoresEntities(["O", "LABEL_0"]), "LABEL_0 is no placeholder at position 1");
});

/** `count` JSONL sentences tagged O, B-PER and I-PER. */
function personRecords(count: number): string {
  const rng = new Prng(3);
  const people = [["Ada"], ["Maria", "Chen"], ["Omar"]];
  return Array.from({ length: count }, () => {
    const who = people[rng.below(people.length)];
    const tokens = [...who, "met", "the", "team"];
    const ner_tags = [...who.map((_, i) => (i === 0 ? "B-PER" : "I-PER")), "O", "O", "O"];
    return JSON.stringify({ tokens, ner_tags });
  }).join("\n") + "\n";
}

Deno.test("a kept token classifier with placeholder names (LABEL_i) and more outputs than tags scores entities in train and eval", async () => {
  const rng = new Prng(5);
  const labels = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [String(i), `LABEL_${i}`]));
  const model = await bertVariant(
    {
      architectures: ["BertForTokenClassification"],
      id2label: labels,
      label2id: Object.fromEntries(Object.entries(labels).map(([i, n]) => [n, Number(i)])),
    },
    (k) => k.startsWith("classifier."),
    {
      "classifier.weight": {
        dtype: "F32",
        shape: [5, 64],
        data: Float32Array.from({ length: 5 * 64 }, () => 0.02 * (rng.below(201) - 100) / 100),
      },
      "classifier.bias": { dtype: "F32", shape: [5], data: new Float32Array(5) },
    },
  );
  try {
    await withTempDir("hartley_tok_placeholders_", async (dir) => {
      const data = `${dir}/ner.jsonl`;
      await Deno.writeTextFile(data, personRecords(16));
      const before = await evalJson(["--model", model, "--data", data, "--seq-len", "16"]);
      assert("f1" in before && "entities" in before, JSON.stringify(before));
      const out = `${dir}/run`;
      const run = await runCli([
        "train",
        "--model",
        model,
        "--data",
        data,
        "--eval-data",
        data,
        "--method",
        "head",
        "--steps",
        "2",
        "--eval-every",
        "1",
        "--save-best",
        "--best-metric",
        "f1",
        "--batch-size",
        "8",
        "--seq-len",
        "16",
        "--out",
        out,
        "--quiet",
      ]);
      assertEquals(run.code, 0, run.err);
      const held = run.err.match(/held-out: loss [\d.]+, accuracy [\d.]+, f1 ([\d.]+)/);
      assert(held && /best held-out f1 /.test(run.err), run.err);
      const after = await evalJson(["--model", `${out}/model`, "--data", data, "--seq-len", "16"]);
      assertClose([after.f1], [Number(held[1])], 1e-4, "eval of model/ and the run's last evaluation");
    });
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});

Deno.test("--new-head drops a regression config's problem_type; without it, the error names problem_type", async () => {
  const model = await tempModelDir(fixtureModel("bert"), { problem_type: "regression" });
  try {
    await withTempDir("hartley_newhead_reg_", async (dir) => {
      const data = await writeToyData(dir, 16);
      const args = [
        "--model",
        model,
        "--data",
        data,
        "--method",
        "head",
        "--steps",
        "1",
        "--batch-size",
        "8",
      ];
      const rest = ["--seq-len", "12", "--eval-fraction", "0", "--quiet"];
      const kept = await runCli(["train", ...args, ...rest, "--out", `${dir}/kept`]);
      assert(kept.code !== 0, kept.err);
      assert(
        kept.err.includes(
          `the labels are read as real values: ${model}/config.json has problem_type "regression"`,
        ) &&
          kept.err.includes("--new-head trains a new head"),
        kept.err,
      );
      const fresh = await runCli(["train", ...args, ...rest, "--new-head", "--out", `${dir}/new`]);
      assertEquals(fresh.code, 0, fresh.err);
      const saved = JSON.parse(await Deno.readTextFile(`${dir}/new/model/config.json`));
      assertEquals(saved.problem_type, "single_label_classification");
      const result = await evalJson(["--model", `${dir}/new/model`, "--data", data, "--seq-len", "12"]);
      assert(typeof result.accuracy === "number", JSON.stringify(result));
      // an adapter run records the new head's problem type, so eval --adapter reads classes too
      const lora = [
        "--model",
        model,
        "--data",
        data,
        "--method",
        "lora",
        "--steps",
        "1",
        "--batch-size",
        "8",
      ];
      const adapted = await runCli(["train", ...lora, ...rest, "--new-head", "--out", `${dir}/lora`]);
      assertEquals(adapted.code, 0, adapted.err);
      const viaAdapter = await evalJson([
        "--adapter",
        `${dir}/lora/adapter`,
        "--data",
        data,
        "--seq-len",
        "12",
      ]);
      assert(typeof viaAdapter.accuracy === "number", JSON.stringify(viaAdapter));
      const refused = await runCli(["eval", "--model", model, "--data", data, "--seq-len", "12"]);
      assert(refused.code !== 0, refused.err);
      assert(refused.err.includes(`${model}/config.json has problem_type "regression"`), refused.err);
    });
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});

Deno.test("JSONL pixel arrays: integer values are resized in 8 bits as Pillow does, fractional ones in floats", async () => {
  await withTempDir("hartley_jsonl_pixels_", async (dir) => {
    const [w, h] = [7, 5];
    const image = Array.from({ length: w * h * 3 }, (_, i) => {
      const [y, x, c] = [Math.floor(i / (w * 3)), Math.floor(i / 3) % w, i % 3];
      return (x * 37 + y * 91 + c * 53 + x * y * 11) % 256;
    });
    // Pillow 12.3: Image.fromarray(image as uint8 [5, 7, 3]).resize((4, 3), Image.BILINEAR), HWC;
    // transformers' resize turns the integer array into that uint8 image
    const pillow = [
      [61, 114, 161, 126, 148, 144, 124, 146, 170, 158, 134, 125],
      [149, 141, 114, 134, 127, 121, 132, 125, 104, 118, 110, 126],
      [102, 155, 140, 111, 133, 99, 113, 135, 112, 91, 144, 133],
    ].flat();
    const lines = [image, image.map((v) => v + 0.25)].map((img) =>
      JSON.stringify({ image: img, width: w, height: h, label: "a" })
    );
    await Deno.writeTextFile(`${dir}/px.jsonl`, lines.join("\n") + "\n");
    const processor: ImageProcessorConfig = {
      height: 3,
      width: 4,
      doResize: true,
      doRescale: false,
      rescaleFactor: 1 / 255,
      doNormalize: false,
      imageMean: [0, 0, 0],
      imageStd: [1, 1, 1],
    };
    const { examples } = await readImageData(`${dir}/px.jsonl`, processor);
    const channelsLast = (p: ImageExample["pixels"]) => {
      const a = typeof p === "function" ? p() : p;
      return Array.from({ length: 36 }, (_, i) => a[(i % 3) * 12 + Math.floor(i / 3)]);
    };
    assertEquals(channelsLast(examples[0].pixels), pillow);
    const floats = channelsLast(examples[1].pixels);
    assert(floats.some((v) => !Number.isInteger(v)), `fractional input rounded: ${floats}`);
    assertClose(floats, pillow, 1, "the float path stays near Pillow's");
  });
});
