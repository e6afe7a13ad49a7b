/**
 * Decoding an image folder for ViT training: `--copies` of a photo-sized (500×375) synthetic JPEG
 * in two class folders, decoded and resized to 224×224 one after another in this thread (the path
 * before the worker pool) and by `decodeImageList` on the pool (lib/io/image_workers.ts, its
 * workers started each round). The two take turns within a round, so load from other jobs affects
 * both alike; the table gives the median seconds and in-thread / pool. The JPEG is written by the
 * MozJPEG encoder of the same pinned @jsquash/jpeg package the decoder comes from.
 *
 *     deno run -A bench/image_decode.ts [--copies 200] [--rounds 3]
 * @module
 */
import encodeJpeg from "@jsquash/jpeg/encode.js";
import { benchArgs } from "./args.ts";
import { median, table } from "./stats.ts";
import { parseImageProcessorConfig } from "../lib/io/image.ts";
import type { VitConfig } from "../lib/io/hf_config.ts";
import { decodeResizedHere, imageWorkerCount, liveImageWorkers } from "../lib/io/image_workers.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { decodeImageList, listImageData } from "../lib/train/image_data.ts";

const { values: v } = benchArgs(import.meta.url, {
  copies: { type: "string", default: "200" },
  rounds: { type: "string", default: "3" },
});
const copies = Number(v.copies), rounds = Number(v.rounds);
const WIDTH = 500, HEIGHT = 375;
const processor = parseImageProcessorConfig(null, { imageSize: 224 } as VitConfig, "defaults");

/** A photo-like RGBA image: smooth gradients, a texture and noise, so that the JPEG has a photo's detail. */
function syntheticPhoto(): { data: Uint8ClampedArray; width: number; height: number; colorSpace: "srgb" } {
  const rng = new Prng(11);
  const data = new Uint8ClampedArray(WIDTH * HEIGHT * 4);
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      const at = (y * WIDTH + x) * 4, texture = 40 * Math.sin(x / 7) * Math.cos(y / 11);
      data[at] = (255 * x) / WIDTH + texture + 20 * rng.normal();
      data[at + 1] = (255 * y) / HEIGHT - texture + 20 * rng.normal();
      data[at + 2] = 128 + texture + 20 * rng.normal();
      data[at + 3] = 255;
    }
  }
  return { data, width: WIDTH, height: HEIGHT, colorSpace: "srgb" };
}

/** Seconds of `run`. */
async function seconds(run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await run();
  return (performance.now() - t0) / 1000;
}

const dir = await Deno.makeTempDir({ prefix: "hartley_bench_decode_" });
try {
  const jpeg = new Uint8Array(await encodeJpeg(syntheticPhoto() as ImageData, { quality: 75 }));
  for (const cls of ["a", "b"]) await Deno.mkdir(`${dir}/${cls}`);
  for (let i = 0; i < copies; i++) await Deno.writeFile(`${dir}/${i % 2 ? "b" : "a"}/${i}.jpg`, jpeg);
  const list = await listImageData(dir, processor);
  const files = list.images.map((image) => image.source);
  const resizeTo = { width: processor.width, height: processor.height };
  // the path before the pool: read, decode and resize each in turn, here
  const inThread = async () => {
    for (const source of files) {
      await decodeResizedHere({ bytes: await Deno.readFile(source), source, resizeTo });
    }
  };
  const oldTimes: number[] = [], poolTimes: number[] = [];
  for (let r = 0; r < rounds; r++) {
    oldTimes.push(await seconds(inThread));
    poolTimes.push(await seconds(() => decodeImageList(list)));
    // idle workers are terminated: the next round starts them again, as a run does
    while (liveImageWorkers() > 0) await new Promise((r) => setTimeout(r, 100));
  }
  const [old, pool] = [median(oldTimes), median(poolTimes)];
  console.log(
    `${copies} JPEGs of ${WIDTH}×${HEIGHT} (${jpeg.length} bytes) to 224×224; ` +
      `navigator.hardwareConcurrency ${navigator.hardwareConcurrency}, ${imageWorkerCount()} workers\n`,
  );
  console.log(
    table(["in thread s", "pool s", "in thread / pool"], [[old, pool, old / pool].map((x) => x.toFixed(2))]),
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
