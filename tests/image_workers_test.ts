import { fileURLToPath } from "node:url";
import { relative } from "node:path";
import { parseHfConfig, type VitConfig } from "../lib/io/hf_config.ts";
import { ImageError, parseImageProcessorConfig, preprocessImage, resizeBilinear } from "../lib/io/image.ts";
import { decodeImage, ImageFileError } from "../lib/io/image_files.ts";
import {
  type DecodeJob,
  decodeResized,
  IDLE_MS,
  imageWorkerCount,
  liveImageWorkers,
} from "../lib/io/image_workers.ts";
import { DataError } from "../lib/train/data_error.ts";
import {
  decodeImageList,
  type ImageList,
  type ListedImage,
  listImageData,
  LOADS_PER_WORKER,
  readImageData,
  readImages,
} from "../lib/train/image_data.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { withTempDir } from "./train_helpers.ts";

const IMAGES = fileURLToPath(new URL("./fixtures/images/", import.meta.url));
const CONFIG = fileURLToPath(new URL("../deno.json", import.meta.url));
const VIT = fileURLToPath(new URL("./fixtures/models/vit/", import.meta.url));
const vit = parseHfConfig(JSON.parse(await Deno.readTextFile(`${VIT}config.json`)), "vit") as VitConfig;
const processor = parseImageProcessorConfig(null, vit, "defaults"); // resize to 32×32
const pixelsOf = (p: Float32Array | (() => Float32Array)) => typeof p === "function" ? p() : p;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The PNG and JPEG fixtures (every PNG mode, JPEG subsamplings, EXIF orientations), CMYK aside. */
async function fixtureFiles(): Promise<string[]> {
  const files: string[] = [];
  for (const dir of ["files", "exif"]) {
    for await (const e of Deno.readDir(`${IMAGES}${dir}`)) {
      if (/\.(png|jpg)$/.test(e.name) && e.name !== "cmyk.jpg") files.push(`${IMAGES}${dir}/${e.name}`);
    }
  }
  return files.sort();
}

/** What this thread made of an image before the pool: decodeImage, then resizeBilinear when resizing. */
async function inThread(job: DecodeJob) {
  const image = await decodeImage(job.bytes, job.source);
  return job.resizeTo ? resizeBilinear(image, job.resizeTo.width, job.resizeTo.height) : image;
}

Deno.test("image workers: every fixture decoded and resized byte for byte as in this thread, in parallel", async () => {
  const files = await fixtureFiles();
  assertEquals(files.length, 21);
  const sizes = [{ width: 32, height: 32 }, { width: 5, height: 7 }, null];
  const jobs = (await Promise.all(files.map((f) => Deno.readFile(f)))).flatMap((bytes, i) =>
    sizes.map((resizeTo): DecodeJob => ({ bytes, source: files[i], resizeTo }))
  );
  // all at once: the workers take them in turn and each answer reaches its own job
  const pooled = await Promise.all(jobs.map((job) => decodeResized(job, { transfer: false })));
  assert(liveImageWorkers() >= 1, "the images went through workers");
  for (const [i, job] of jobs.entries()) {
    const want = await inThread(job);
    const at = `${job.source} to ${JSON.stringify(job.resizeTo)}`;
    assertEquals([pooled[i].width, pooled[i].height], [want.width, want.height], at);
    assertEquals(pooled[i].data.constructor, Uint8Array, at);
    assertEquals(Array.from(pooled[i].data), Array.from(want.data), at);
  }
  // bytes the caller keeps are copied (still whole after); bytes it gives away are moved
  assertEquals(jobs[0].bytes.byteLength > 0, true);
  const given = await Deno.readFile(files[0]);
  await decodeResized({ bytes: given, source: files[0], resizeTo: null }, { transfer: true });
  assertEquals(given.byteLength, 0);
});

Deno.test("image workers: errors come back as this thread throws them, class and message", async () => {
  const photo = await Deno.readFile(`${IMAGES}files/photo.jpg`);
  const png = await Deno.readFile(`${IMAGES}files/rgb.png`);
  const broken: DecodeJob[] = [
    { bytes: await Deno.readFile(`${IMAGES}exif/cmyk.jpg`), source: "cmyk.jpg", resizeTo: null },
    { bytes: photo.subarray(0, photo.length - 100), source: "cut.jpg", resizeTo: null },
    { bytes: png.subarray(0, 60), source: "cut.png", resizeTo: null },
    { bytes: new TextEncoder().encode("GIF89a..."), source: "a.gif", resizeTo: null },
  ];
  for (const job of broken) {
    const here = await inThread(job).then(() => null, (e: Error) => e);
    assert(here instanceof ImageFileError, job.source);
    await assertRejects(() => decodeResized(job, { transfer: false }), ImageFileError, here.message);
  }
  await assertRejects(
    () =>
      decodeResized({ bytes: png, source: "rgb.png", resizeTo: { width: 0, height: 7 } }, {
        transfer: false,
      }),
    ImageError,
    "resize target must be positive integers, got 0×7",
  );
});

/**
 * A list of `n` images whose loads take `delays[i]` ms (out of order) and fail where `fails` says,
 * counting the loads under way at once and those started after one failed.
 */
function fakeList(n: number, delays: (i: number) => number, fails: (i: number) => boolean = () => false) {
  const seen = { inFlight: 0, most: 0, started: 0, afterFailure: 0, failed: false };
  const images = Array.from({ length: n }, (_, i): ListedImage => ({
    source: `image ${i}`,
    label: i % 3,
    load: async () => {
      seen.started++;
      if (seen.failed) seen.afterFailure++;
      seen.most = Math.max(seen.most, ++seen.inFlight);
      await sleep(delays(i));
      seen.inFlight--;
      if (fails(i)) {
        seen.failed = true;
        throw new ImageFileError(`image ${i}: broken`);
      }
      return Float32Array.of(i);
    },
  }));
  const list: ImageList = { images, labelNames: null, imageShape: [3, 1, 1], encoded: true };
  return { list, seen };
}

Deno.test("decodeImageList: a few loads an image worker under way, examples in input order, progress only up", async () => {
  const n = 40, bound = LOADS_PER_WORKER * imageWorkerCount();
  const { list, seen } = fakeList(n, (i) => (i * 7) % 5 * 3);
  const progress: [number, number][] = [];
  const examples = await decodeImageList(list, list.images, (d, t) => progress.push([d, t]));
  assertEquals(examples.map((e) => pixelsOf(e.pixels)[0]), Array.from({ length: n }, (_, i) => i));
  assertEquals(examples.map((e) => e.label), list.images.map((image) => image.label));
  assertEquals(seen.most, Math.min(n, bound), "loads under way at most");
  assert(seen.most > 1, "loads overlap");
  assertEquals(progress, Array.from({ length: n }, (_, i) => [i + 1, n]));
  assertEquals(await decodeImageList(list, []), []);
});

Deno.test("decodeImageList: after a failure no load starts; the first failed in input order is thrown", async () => {
  // image 1 fails last, image 2 first: image 1's error is thrown, as decoding one by one meets it
  const delays = (i: number) => (i === 1 ? 40 : i === 2 ? 1 : 5);
  const { list, seen } = fakeList(30, delays, (i) => i === 1 || i === 2);
  const progress: number[] = [];
  await assertRejects(
    () => decodeImageList(list, list.images, (d) => progress.push(d)),
    DataError,
    "image 1: broken",
  );
  assertEquals(seen.afterFailure, 0);
  assert(seen.started < 30, `${seen.started} loads started`);
  assertEquals(seen.inFlight, 0, "those under way finished before the error was thrown");
  assertEquals(progress, Array.from({ length: progress.length }, (_, i) => i + 1));
});

/** A folder of two classes holding the fixtures, in several sizes and formats. */
async function fixtureFolder(dir: string): Promise<string[]> {
  const files = await fixtureFiles();
  const copies: string[] = [];
  for (const [i, file] of files.entries()) {
    const copy = `${dir}/${i % 2 ? "b" : "a"}/${String(i).padStart(2, "0")}_${file.split("/").pop()}`;
    await Deno.mkdir(`${dir}/${i % 2 ? "b" : "a"}`, { recursive: true });
    await Deno.copyFile(file, copy);
    copies.push(copy);
  }
  return copies.sort();
}

Deno.test("readImageData, readImages: a folder decoded on the workers as in this thread, in path order; the first broken file named", async () => {
  await withTempDir("hartley_imgpool_", async (dir) => {
    const files = await fixtureFolder(dir);
    const want = await Promise.all(files.map(async (f) => {
      const job = { bytes: await Deno.readFile(f), source: f, resizeTo: { width: 32, height: 32 } };
      return Array.from(preprocessImage(await inThread(job), processor));
    }));
    const data = await readImageData(dir, processor);
    assertEquals(data.examples.map((e) => Array.from(pixelsOf(e.pixels))), want);
    assertEquals(data.examples.map((e) => e.label), files.map((f) => (f.includes("/a/") ? 0 : 1)));
    const unlabelled = await readImages(dir, processor);
    assertEquals(unlabelled.map((x) => x.source), files);
    assertEquals(unlabelled.map((x) => Array.from(x.pixels())), want);
    // two broken files among good ones: the first in path order is named, as one by one
    await Deno.writeTextFile(`${dir}/a/05_bad.png`, "not an image");
    await Deno.writeFile(`${dir}/b/01_cut.png`, (await Deno.readFile(files[0])).subarray(0, 60));
    const named = `${relative(Deno.cwd(), `${dir}/a/05_bad.png`)}: not a PNG or JPEG file`;
    await assertRejects(() => readImageData(dir, processor), DataError, named);
    await assertRejects(() => readImages(dir, processor), DataError, named);
  });
});

Deno.test("decodeImageList: a Parquet split's list decodes twice: the table's bytes outlive a decoding", async () => {
  const list = await listImageData(`${IMAGES}images.parquet`, processor);
  const first = await decodeImageList(list);
  const again = await decodeImageList(list);
  assertEquals(
    again.map((e) => Array.from(pixelsOf(e.pixels))),
    first.map((e) => Array.from(pixelsOf(e.pixels))),
  );
});

Deno.test("image workers: terminated once idle, started again for the next job", async () => {
  const job = async () => ({
    bytes: await Deno.readFile(`${IMAGES}files/photo.jpg`),
    source: "photo.jpg",
    resizeTo: null,
  });
  await decodeResized(await job(), { transfer: true });
  assert(liveImageWorkers() >= 1);
  await sleep(IDLE_MS + 300);
  assertEquals(liveImageWorkers(), 0);
  await decodeResized(await job(), { transfer: true });
  assert(liveImageWorkers() >= 1);
  await sleep(IDLE_MS + 300);
  assertEquals(liveImageWorkers(), 0);
});

/** A script that reads the fixture folder and prints its labels, a checksum and the workers left. */
const SCRIPT = `
  import { parseImageProcessorConfig } from "${new URL("../lib/io/image.ts", import.meta.url)}";
  import { liveImageWorkers } from "${new URL("../lib/io/image_workers.ts", import.meta.url)}";
  import { readImageData } from "${new URL("../lib/train/image_data.ts", import.meta.url)}";
  /*PRELUDE*/
  const processor = parseImageProcessorConfig(null, { imageSize: 32 }, "defaults");
  const data = await readImageData("${IMAGES}folder", processor);
  const sum = data.examples.reduce((s, e) => s + e.pixels().reduce((a, b) => a + b, 0), 0);
  const madeLater = globalThis.madeAfterFailure?.() ?? null;
  console.log(JSON.stringify({ labels: data.examples.map((e) => e.label), sum, workers: liveImageWorkers(), made: madeLater }));
`;

Deno.test("image workers: a process exits by itself after decoding; where no worker can load, this thread decodes", async () => {
  const lib = (file: string) => fileURLToPath(new URL(`../lib/io/${file}`, import.meta.url));
  await withTempDir("hartley_imgexit_", async (dir) => {
    await Deno.writeTextFile(`${dir}/decode.js`, SCRIPT);
    // a runtime whose threads cannot start: every Worker throws as it is made
    const noThreads = 'globalThis.Worker = class { constructor() { throw new Error("no threads"); } };';
    await Deno.writeTextFile(`${dir}/no_threads.js`, SCRIPT.replace("/*PRELUDE*/", noThreads));
    // Workers counted: those made after the first failed to load (a failed load means none can)
    const counted = `const W = globalThis.Worker; let made = 0, atFailure = null;
      globalThis.Worker = class extends W {
        constructor(...a) { super(...a); made++; this.addEventListener("error", () => { atFailure ??= made; }); }
      };
      globalThis.madeAfterFailure = () => atFailure === null ? null : made - atFailure;`;
    await Deno.writeTextFile(`${dir}/counted.js`, SCRIPT.replace("/*PRELUDE*/", counted));
    const run = async (deny: string[], script = "decode.js") => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", ...deny.map((f) => `--deny-read=${f}`), "--config", CONFIG, `${dir}/${script}`],
        env: { NO_COLOR: "1" },
        signal: AbortSignal.timeout(60_000), // a process kept alive by its workers is killed, and fails here
      }).output();
      const text = (b: Uint8Array) => new TextDecoder().decode(b);
      return { code: out.code, out: JSON.parse(text(out.stdout) || "null"), err: text(out.stderr) };
    };
    const pooled = await run([]);
    assertEquals([pooled.code, pooled.err], [0, ""]);
    assertEquals(pooled.out.labels, [0, 0, 0, 1, 1, 1]);
    assert(pooled.out.workers >= 1, "decoded on workers");
    // no read permission for the worker's module: decoded here, without a word
    const denied = await run([lib("image_worker.ts")]);
    assertEquals([denied.code, denied.err, denied.out], [0, "", { ...pooled.out, workers: 0 }]);
    // the worker's module loads, a module it imports does not: that worker fails and this thread decodes
    const broken = await run([lib("image_files.ts")], "counted.js");
    assertEquals([broken.code, broken.out], [0, { ...pooled.out, workers: 0, made: 0 }]);
    assert(broken.err.includes("image_files.ts"), broken.err);
    // no Worker can be made: the jobs queued for the first are decoded here too, none left waiting
    const threadless = await run([], "no_threads.js");
    assertEquals([threadless.code, threadless.err, threadless.out], [0, "", { ...pooled.out, workers: 0 }]);
  });
});
