/**
 * The 8-bit bilinear resize of ViT preprocessing, the implementation before its specialisation
 * (the reference copy in tests/image_resize_speed_test.ts) and the current one side by side, on
 * random RGB images of the sizes a ViT data set brings to 224×224: a photo-sized JPEG, a CIFAR-sized
 * PNG upscaled, a large photo. Old and new take turns within a round, so load from other jobs
 * affects both alike; the table gives the median ms per image and old / new.
 *
 *     deno run -A bench/image_resize.ts [--rounds 30]
 * @module
 */
import { benchArgs } from "./args.ts";
import { median, table } from "./stats.ts";
import { resizeBilinear, type RgbImage } from "../lib/io/image.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { referenceResizeBilinear } from "../tests/image_resize_speed_test.ts";

const { values: v } = benchArgs(import.meta.url, { rounds: { type: "string", default: "30" } });
const rounds = Number(v.rounds);

/** [width, height] of each input, each resized to 224×224. */
const INPUTS: [number, number][] = [[500, 375], [32, 32], [1024, 768]];
const OUT = 224;
const rng = new Prng(5);

type Resize = (image: RgbImage, width: number, height: number) => RgbImage;

/** Milliseconds of one call of `resize` on `image`. */
function timeOnce(resize: Resize, image: RgbImage): number {
  const t0 = performance.now();
  resize(image, OUT, OUT);
  return performance.now() - t0;
}

/** Whether old and new give the same bytes on `image` (the bench compares like with like). */
function sameBytes(image: RgbImage): boolean {
  const a = referenceResizeBilinear(image, OUT, OUT).data, b = resizeBilinear(image, OUT, OUT).data;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const rows = INPUTS.map(([width, height]) => {
  const image = {
    width,
    height,
    data: Uint8Array.from({ length: width * height * 3 }, () => rng.below(256)),
  };
  const same = sameBytes(image); // also warms up both
  const old: number[] = [], now: number[] = [];
  for (let r = 0; r < rounds; r++) {
    old.push(timeOnce(referenceResizeBilinear, image));
    now.push(timeOnce(resizeBilinear, image));
  }
  const [o, n] = [median(old), median(now)];
  return [
    `${width}×${height} → ${OUT}²`,
    o.toFixed(2),
    n.toFixed(2),
    `${(o / n).toFixed(1)}×`,
    same ? "yes" : "NO",
  ];
});
console.log(`8-bit RGB resizeBilinear, median of ${rounds} rounds; ${new Date().toISOString()}`);
console.log(table(["input", "old ms", "new ms", "old / new", "same bytes"], rows));
