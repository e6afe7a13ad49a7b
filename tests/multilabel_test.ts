// Multi-label classification (problem_type "multi_label_classification"): the loss against its
// float64 reference, label lists read from files, multi-hot batches and the metrics.
import { getGpu } from "../lib/gpu/mod.ts";
import { bceWithLogits, classificationLoss } from "../lib/nn/loss.ts";
import { Tensor } from "../lib/tensor/mod.ts";
import { bceWithLogits as bceReference } from "../lib/tensor/reference/loss.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { ClassificationDataset } from "../lib/train/data.ts";
import { collate } from "../lib/train/batches.ts";
import { multiLabelScores } from "../lib/train/metrics.ts";
import { labelFieldOf, readClassificationFile } from "../lib/train/readers.ts";
import { DataError } from "../lib/train/data_error.ts";
import { chooseTask } from "../lib/cli/task.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";
import { Rng } from "./tensor_helpers.ts";

Deno.test("bceWithLogits: torch's BCEWithLogitsLoss and its gradient against float64, large and zero logits included", async () => {
  const gpu = await getGpu();
  const rng = new Rng(17);
  for (const [b, l] of [[1, 1], [3, 7], [5, 28]]) {
    const x = Float32Array.from(rng.normals(b * l, 4));
    if (x.length > 2) [x[0], x[1], x[2]] = [60, -60, 0]; // e^60 would overflow a naive form; σ(0) = ½
    const y = Float32Array.from({ length: b * l }, () => (rng.uniform() < 0.4 ? 1 : 0));
    const logits = Tensor.from(gpu, x, [b, l], { requiresGrad: true });
    const loss = bceWithLogits(logits, Tensor.from(gpu, y, [b, l]));
    loss.backward();
    const ref = bceReference(Float64Array.from(x), Float64Array.from(y));
    assertClose([await loss.item()], [ref.loss], 1e-6, `${b}×${l} loss`);
    assertClose(await logits.grad!.toArray(), ref.grad, 1e-5, `${b}×${l} gradient`);
    // the head's loss by problem_type takes multi-hot f32 targets [B, L]
    const byType = classificationLoss(logits, Tensor.from(gpu, y, [b, l]), "multi_label_classification");
    assertClose([await byType.item()], [ref.loss], 1e-6, `${b}×${l} by problem_type`);
  }
  assertThrows(
    () =>
      classificationLoss(
        Tensor.zeros(gpu, [2, 3]),
        Tensor.from(gpu, Int32Array.of(0, 1), [2]),
        "multi_label_classification",
      ),
    "multi-label targets must be f32 [2, 3]",
  );
});

Deno.test("multiLabelScores: subset accuracy, micro and macro F1 as sklearn computes them", () => {
  // rows [1,0,1] [0,1,0] [1,1,0] [0,0,0] against [1,0,0] [0,1,0] [1,0,1] [0,0,0]
  const pred = [1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 0], truth = [1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0];
  const s = multiLabelScores(pred, truth, 3);
  // 2 of 4 rows exact; tp 3, fp 2, fn 1; per label F1 1, 2/3, 0
  assertClose([s.accuracy, s.f1, s.f1Macro], [0.5, 2 / 3, (1 + 2 / 3 + 0) / 3], 1e-12, "scores");
  assertThrows(() => multiLabelScores([1, 0, 1], [1, 0, 1], 2), "3 entries are not rows of 2 labels");
});

Deno.test("label lists: names or ids, each once, become 0/1 rows of the head's labels; a mix is named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/tags.jsonl`;
    const rows = [
      { text: "red apple", labels: ["color", "fruit"] },
      { text: "calm", labels: [] },
      { text: "pear pear", labels: ["fruit", "fruit"] },
    ];
    await Deno.writeTextFile(path, rows.map((r) => JSON.stringify(r)).join("\n"));
    const data = await readClassificationFile(path, { labelField: "labels" });
    assertEquals(data.multiLabel, true);
    assertEquals(data.labelNames, ["color", "fruit"]);
    assertEquals(data.examples.map((e) => e.labels), [[0, 1], [], [1]]);
    const tokenizer = await loadTokenizer(`${fixtureModel("gpt2")}/tokenizer.json`);
    const ds = new ClassificationDataset(data.examples, tokenizer, {
      maxLength: 8,
      numLabels: 3,
      multiLabel: true,
    });
    const batch = collate(ds, [0, 1, 2]);
    assertEquals(Array.from(batch.labels), [1, 1, 0, 0, 0, 0, 0, 1, 0]);
    assert(batch.labels instanceof Float32Array, "multi-hot floats");
    assertThrows(
      () =>
        new ClassificationDataset(data.examples, tokenizer, { maxLength: 8, numLabels: 1, multiLabel: true }),
      "tags.jsonl:1: the example has label 1, which does not fit the head's 1 labels",
    );
    await Deno.writeTextFile(path, `{"text": "a", "labels": [0, 2]}\n{"text": "b", "labels": 1}\n`);
    await assertRejects(
      () => readClassificationFile(path, { labelField: "labels" }),
      DataError,
      "tags.jsonl:2: the label 1 is not a list, but the first example's is a list (multi-label data)",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("label lists from Parquet: a Sequence(ClassLabel) column's ids (INT64) and names, as go_emotions holds them", async () => {
  const path = new URL("./fixtures/data/tags.parquet", import.meta.url).pathname;
  const data = await readClassificationFile(path, { labelField: "labels" });
  // without a "label" field, "labels" is the label field; a decoder then classifies rather than
  // training a causal LM on the texts
  assertEquals(await readClassificationFile(path), data);
  assertEquals(labelFieldOf(["text", "labels"]), "labels");
  assertEquals(labelFieldOf(["text", "label", "labels"]), "label");
  const gpt2 = await loadHfConfig(new URL("./fixtures/models/gpt2", import.meta.url).pathname);
  assertEquals(await chooseTask(undefined, path, gpt2), "seq-cls");
  assertEquals(data.multiLabel, true);
  assertEquals(data.labelNames, ["color", "fruit", "weather"]);
  assertEquals(data.examples.map((e) => [e.text, e.labels]), [["red apple", [0, 1]], ["calm", []], [
    "rainy pear",
    [2, 1],
  ]]);
  // a head that names its labels: the ids go through the column's ClassLabel names
  const named = await readClassificationFile(path, { labels: ["weather", "color", "fruit"] });
  assertEquals(named.examples.map((e) => e.labels), [[1, 2], [], [0, 2]]);
  await assertRejects(
    () => readClassificationFile(path, { labels: ["color", "fruit", "mood"] }),
    DataError,
    'tags.parquet:3: label 2 (class "weather") is not one of the labels ["color","fruit","mood"]',
  );
});
