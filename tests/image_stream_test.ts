/**
 * Image splits too large to hold decoded (train's --image-memory) and eval's single pass are
 * decoded again for each batch: ImageBatches loads a batch's streamed images in `prepare`, the
 * trainer and `inOrder` ask for the next batch ahead, and a streamed training split is checked
 * once before the first step.
 */
import { join } from "node:path";
import { ImageBatches, type ImageExample, inOrder, type StreamedImage } from "../lib/train/tasks.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { classifyImages } from "../lib/infer/predict.ts";
import { imageWorkerCount } from "../lib/io/image_workers.ts";
import { LOADS_PER_WORKER } from "../lib/train/image_data.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { type DataSpec, loadSplits } from "../lib/cli/setup.ts";
import { loadModel } from "../lib/models/load.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

const VIT = "tests/fixtures/models/vit";
const IMAGES = "tests/fixtures/images/folder";

/** Seven 1×2×2 images, held, and the same streamed with a count of loads. */
function images() {
  const held: ImageExample[] = Array.from({ length: 7 }, (_, i) => ({
    pixels: Float32Array.from({ length: 4 }, (_, k) => 10 * i + k),
    label: i % 3,
  }));
  const loads: number[] = [];
  const streamed: StreamedImage[] = held.map(({ pixels, label }, i) => ({
    label,
    load: () => (loads.push(i), Promise.resolve(() => pixels as Float32Array)),
  }));
  return { held, streamed, loads };
}

Deno.test("ImageBatches: streamed images give the held images' batches once prepared, each loaded once a batch", async () => {
  const { held, streamed, loads } = images();
  const a = new ImageBatches(held, [1, 2, 2], 3, { seed: 4 });
  const b = new ImageBatches(streamed, [1, 2, 2], 3, { seed: 4 });
  for (let s = 0; s < 2 * a.stepsPerEpoch; s++) {
    const at = b.positionAt(s);
    assertThrows(() => b.batch(at), `the batch at epoch ${at.epoch}, step ${at.step} streams its images`);
    await Promise.all([b.prepare(at), b.prepare(at)]); // asked twice (ahead, then for the step): loaded once
    const [x, y] = [a.batch(a.positionAt(s)), b.batch(at)];
    assertEquals([...y.pixels], [...x.pixels]);
    assertEquals([...y.labels], [...x.labels]);
    assertThrows(() => b.batch(at), "prepare it before taking it"); // a taken batch is not held
  }
  assertEquals(loads.length, 14, "each image once an epoch");
  // inOrder prepares each batch (and the next one ahead)
  const passed = [];
  for await (const batch of inOrder(new ImageBatches(streamed, [1, 2, 2], 2, { shuffle: false }))) {
    passed.push(...batch.labels);
  }
  assertEquals(passed, held.map((e) => e.label));
});

Deno.test("ImageBatches: a streamed image that fails to load fails its batch's prepare, the first in its order; a retry loads again", async () => {
  const { streamed } = images();
  let fail = true;
  const late = (ms: number, message: string) =>
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(message)), ms));
  const good = [streamed[0].load, streamed[5].load];
  streamed[0] = { label: 0, load: () => fail ? late(30, "a.png: broken") : good[0]() };
  streamed[5] = { label: 2, load: () => fail ? late(0, "b.png: broken") : good[1]() };
  const b = new ImageBatches(streamed, [1, 2, 2], 7, { shuffle: false });
  await assertRejects(() => b.prepare({ epoch: 0, step: 0 }), Error, "a.png: broken");
  fail = false;
  await b.prepare({ epoch: 0, step: 0 });
  assertEquals(b.batch({ epoch: 0, step: 0 }).labels.length, 7);
});

Deno.test("ImageBatches: a batch's images load a few an image worker at a time, however large the batch", async () => {
  let live = 0, most = 0;
  const streamed: StreamedImage[] = Array.from({ length: 200 }, () => ({
    label: 0,
    load: async () => {
      most = Math.max(most, ++live);
      await new Promise((r) => setTimeout(r, 1));
      live--;
      return new Float32Array(4);
    },
  }));
  await new ImageBatches(streamed, [1, 2, 2], 200, { shuffle: false }).prepare({ epoch: 0, step: 0 });
  assertEquals(most, LOADS_PER_WORKER * imageWorkerCount());
});

Deno.test("train --image-memory: a split over it is checked, then decoded per batch, and trains, evaluates and resumes as a held one", async () => {
  await withTempDir("hartley_image_stream_", async (dir) => {
    // two epochs of 3-image steps (batches of 1, --grad-accum 3: a short last step), evaluated and
    // checkpointed each step, stopped after the first and resumed
    const run = async (out: string, extra: string[] = []) => {
      const args = [
        ...[
          "train",
          "--model",
          VIT,
          "--data",
          IMAGES,
          "--epochs",
          "2",
          "--batch-size",
          "1",
          "--grad-accum",
          "3",
        ],
        ...["--lr", "0.05", "--eval-fraction", "0.34", "--eval-every", "1", "--save-every", "1", "-q"],
        ...["--out", join(dir, out), ...extra],
      ];
      const stopped = await runCli([...args, "--stop-at", "1"]);
      assertEquals(stopped.code, 0, stopped.err);
      return await runCli([...args, "--resume"]);
    };
    const [held, streamed] = [await run("held"), await run("streamed", ["--image-memory", "4KiB"])];
    assertEquals([held.code, streamed.code], [0, 0], streamed.err);
    const weights = async (out: string) => {
      const file = await openSafetensors(join(dir, out, "adapter/adapter_model.safetensors"));
      return await Promise.all(file.names.map(async (k) => [k, Array.from(await file.readF32(k))] as const));
    };
    assertEquals(await weights("streamed"), await weights("held"));
    const records = (out: string) =>
      Deno.readTextFile(join(dir, out, "log.jsonl")).then((t) =>
        t.split("\n").filter((l) => /"type":"(train|eval)"/.test(l)).map((l) =>
          l.replace(/"elapsed_s":[\d.e-]+/, "")
        )
      );
    const [streamedLog, heldLog] = [await records("streamed"), await records("held")];
    assert(heldLog.filter((l) => l.includes('"eval"')).length >= 3, heldLog.join("\n"));
    assertEquals(streamedLog, heldLog);

    // a broken image is named before the first step, though the one step trains on another image
    const broken = join(dir, "broken");
    for (const cls of ["cat", "dog"]) {
      await Deno.mkdir(join(broken, cls), { recursive: true });
      for await (const e of Deno.readDir(join(IMAGES, cls))) {
        await Deno.copyFile(join(IMAGES, cls, e.name), join(broken, cls, e.name));
      }
    }
    await Deno.writeTextFile(join(broken, "dog", "zz.png"), "not a png");
    const bad = await runCli([
      ...[
        "train",
        "--model",
        VIT,
        "--data",
        broken,
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--image-memory",
        "4KiB",
      ],
      ...["--eval-fraction", "0", "--seed", "1", "--out", join(dir, "bad")],
    ]);
    assert(bad.code !== 0 && bad.err.includes("zz.png"), bad.err);
    const log = await Deno.readTextFile(join(dir, "bad", "log.jsonl")).catch(() => "");
    assert(!log.includes('"train"'), log);
  });
});

Deno.test("train --image-memory: a size it cannot read, and a task without images, are refused by name", async () => {
  await withTempDir("hartley_image_stream_", async (dir) => {
    const images = ["train", "--model", VIT, "--data", IMAGES, "--steps", "1", "--out", join(dir, "a")];
    const unread = await runCli([...images, "--image-memory", "lots"]);
    assertEquals(unread.code, 2, unread.err);
    assert(unread.err.includes("--image-memory: expected a byte count"), unread.err);
    const text = await runCli([
      ...tinyRun(await writeToyData(dir, 8), join(dir, "b")),
      "--image-memory",
      "1GiB",
    ]);
    assertEquals(text.code, 2, text.err);
    assert(text.err.includes("--image-memory") && text.err.includes("seq-cls"), text.err);
  });
});

Deno.test("predict --image-memory: images over it are decoded a batch at a time, with the held images' answers", async () => {
  const args = ["predict", "--model", VIT, "--data", IMAGES, "--batch-size", "4", "--json"];
  const [held, streamed] = [await runCli(args), await runCli([...args, "--image-memory", "4KiB"])];
  assertEquals([held.code, streamed.code], [0, 0], streamed.err);
  assertEquals(streamed.out, held.out);
  assertEquals(held.out.trim().split("\n").length, 6);
  const text = await runCli([
    "predict",
    "--model",
    "tests/fixtures/models/gpt2",
    "--text",
    "a",
    "--image-memory",
    "1GiB",
  ]);
  assertEquals(text.code, 2, text.err);
  assert(text.err.includes("--image-memory"), text.err);
});

Deno.test("classifyImages: images loaded per batch answer as held ones; the first load that fails is thrown", async () => {
  const model = await loadModel(await getGpu(), VIT);
  try {
    const rng = new Prng(3), per = 3 * 32 * 32;
    const held = Array.from({ length: 5 }, () => Float32Array.from({ length: per }, () => rng.normal()));
    const loads: number[] = [];
    const streamed = held.map((pixels, i) => ({ load: () => (loads.push(i), Promise.resolve(pixels)) }));
    const [a, b] = [
      await classifyImages(model, held, { batchSize: 2 }),
      await classifyImages(model, streamed, { batchSize: 2 }),
    ];
    assertEquals(b, a);
    assertEquals(loads, [0, 1, 2, 3, 4]);
    streamed[3] = { load: () => Promise.reject(new Error("image 3: broken")) };
    await assertRejects(() => classifyImages(model, streamed, { batchSize: 2 }), Error, "image 3: broken");
  } finally {
    model.dispose();
  }
});

Deno.test("--image-memory: a JSONL training file with an image folder to evaluate on streams that folder", async () => {
  await withTempDir("hartley_image_stream_", async (dir) => {
    const data = join(dir, "train.jsonl"), rng = new Prng(2);
    const rows = ["cat", "dog", "cat", "dog"].map((label) =>
      JSON.stringify({ label, pixel_values: Array.from({ length: 3 * 32 * 32 }, () => rng.normal()) })
    );
    await Deno.writeTextFile(data, rows.join("\n") + "\n");
    const spec: DataSpec = {
      task: "image-cls",
      data,
      evalData: IMAGES,
      evalFraction: 0,
      seqLen: 0,
      batchSize: 2,
      seed: 0,
      quiet: true,
      imageMemory: 4096,
    };
    const splits = await loadSplits(spec, await loadHfConfig(VIT), null, VIT);
    assert(splits.summary.includes("decoded again for each batch"), splits.summary);
    assert((splits.eval as ImageBatches).examples.every((e) => "load" in e), "the eval split streams");
  });
});

Deno.test("--image-memory: the images it holds are kept decoded, the training rows first; only the others stream", async () => {
  const spec: DataSpec = {
    task: "image-cls",
    data: IMAGES,
    evalFraction: 0.34,
    seqLen: 0,
    batchSize: 2,
    seed: 0,
    quiet: true,
    imageMemory: 3 * 3 * 32 * 32, // three of the fixture's 32×32 images
  };
  const splits = await loadSplits(spec, await loadHfConfig(VIT), null, VIT);
  assert(splits.summary.includes("(3 of them past what --image-memory holds"), splits.summary);
  const held = (b: unknown) => (b as ImageBatches).examples.map((e) => "pixels" in e);
  assertEquals(held(splits.train), [true, true, true, false]);
  assertEquals(held(splits.eval), [false, false]);
});
