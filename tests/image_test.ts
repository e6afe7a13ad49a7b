import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  ImageError,
  loadImageProcessorConfig,
  parseImageProcessorConfig,
  preprocessImage,
  preprocessImages,
  resizeBilinear,
} from "../lib/io/image.ts";
import { loadHfConfig, type VitConfig } from "../lib/io/hf_config.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { Prng } from "../lib/spectral/prng.ts";

const VIT = new URL("./fixtures/models/vit/", import.meta.url).pathname;
const vit = await loadHfConfig(VIT) as VitConfig;

/** A 1-channel pattern repeated over R, G, B as floats. */
function gray(width: number, height: number, values: number[]) {
  return { width, height, data: Float32Array.from(values.flatMap((v) => [v, v, v])) };
}

function channel0(data: ArrayLike<number>): number[] {
  return Array.from(data).filter((_, i) => i % 3 === 0);
}

Deno.test("resize: same size is the identity", () => {
  const rng = new Prng(3);
  const img = { width: 7, height: 5, data: Uint8Array.from({ length: 105 }, () => rng.below(256)) };
  assertEquals(Array.from(resizeBilinear(img, 7, 5).data), Array.from(img.data));
});

Deno.test("resize: upscaling is half-pixel bilinear, downscaling is antialiased", () => {
  // 2 → 4 along x: centres at 0.25, 0.75, 1.25, 1.75 of the input.
  const up = resizeBilinear(gray(2, 1, [0, 100]), 4, 1);
  assertEquals(channel0(up.data), [0, 25, 75, 100]);
  // 4 → 2 along x: the triangle filter widens to the downscale factor 2, taps 3/7, 3/7, 1/7.
  const down = resizeBilinear(gray(4, 1, [70, 0, 0, 0]), 2, 1);
  assertClose(channel0(down.data), [30, 0], 1e-12);
  const down2 = resizeBilinear(gray(4, 1, [0, 0, 0, 70]), 2, 1);
  assertClose(channel0(down2.data), [0, 30], 1e-12);
  // A constant image stays constant at any size; 8-bit stays 8-bit.
  const flat = resizeBilinear({ width: 5, height: 3, data: new Uint8Array(45).fill(200) }, 11, 2);
  assert(flat.data instanceof Uint8Array, "8-bit output");
  assert(flat.data.every((v) => v === 200), "constant");
});

Deno.test("8-bit resize matches Pillow's BILINEAR bit for bit", async () => {
  const fixture = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/images/pil_bilinear.json", import.meta.url)),
  );
  for (const c of fixture.cases) {
    const img = { width: c.width, height: c.height, data: Uint8Array.from(c.data as number[]) };
    const out = resizeBilinear(img, c.outWidth, c.outHeight);
    assertEquals(Array.from(out.data), c.out, `${c.width}×${c.height} → ${c.outWidth}×${c.outHeight}`);
  }
});

Deno.test("preprocess: resize, rescale 1/255, normalise 0.5/0.5, channels first", () => {
  const cfg = parseImageProcessorConfig(null, vit, "/none");
  assertEquals([cfg.width, cfg.height, cfg.rescaleFactor], [32, 32, 1 / 255]);
  // A 64×64 image, red 255, green 0, blue 51: after resizing still constant.
  const data = new Uint8Array(64 * 64 * 3);
  for (let i = 0; i < 64 * 64; i++) data.set([255, 0, 51], i * 3);
  const px = preprocessImage({ width: 64, height: 64, data }, cfg);
  assertEquals(px.length, 3 * 32 * 32);
  const plane = 32 * 32;
  assertClose([px[0], px[plane - 1]], [1, 1], 1e-7);
  assertClose([px[plane], px[2 * plane - 1]], [-1, -1], 1e-7);
  assertClose([px[2 * plane]], [(51 / 255 - 0.5) / 0.5], 1e-6);
  const batch = preprocessImages([{ width: 64, height: 64, data }, { width: 64, height: 64, data }], cfg);
  assertEquals(batch.length, 2 * px.length);
  assertEquals(Array.from(batch.subarray(px.length)), Array.from(px));
});

Deno.test("preprocessor_config.json: size, mean/std, switches; missing file gives defaults", async () => {
  const cfg = parseImageProcessorConfig(
    {
      size: { height: 4, width: 6 },
      image_mean: [0.485, 0.456, 0.406],
      image_std: [0.229, 0.224, 0.225],
      do_resize: false,
      resample: 2,
    },
    vit,
    "/p",
  );
  assertEquals([cfg.height, cfg.width, cfg.doResize], [4, 6, false]);
  const px = preprocessImage({ width: 6, height: 4, data: new Uint8Array(72).fill(255) }, cfg);
  assertClose([px[0], px[24], px[48]], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], 1e-6);
  assertThrows(
    () => preprocessImage({ width: 5, height: 4, data: new Uint8Array(60) }, cfg),
    "image is 5×4, the model takes 6×4 and resizing is off",
  );
  assertEquals(parseImageProcessorConfig({ size: 16 }, vit, "/p").width, 16);
  const defaults = await loadImageProcessorConfig(VIT, vit);
  assertEquals([defaults.width, defaults.imageMean, defaults.imageStd], [32, [0.5, 0.5, 0.5], [
    0.5,
    0.5,
    0.5,
  ]]);
});

Deno.test("bad preprocessing input: clear errors", async () => {
  assertThrows(
    () => parseImageProcessorConfig({ resample: 3 }, vit, "/p/preprocessor_config.json"),
    "resample 3",
  );
  assertThrows(
    () => parseImageProcessorConfig({ image_mean: [0.5, 0.5] }, vit, "/p"),
    `/p: "image_mean" must be 3`,
  );
  assertThrows(
    () => parseImageProcessorConfig({ image_std: [1, 0, 1] }, vit, "/p"),
    `"image_std" has a zero`,
  );
  assertThrows(() => parseImageProcessorConfig({ size: { shortest_edge: 3 } }, vit, "/p"), `"size" must be`);
  // sizes must be positive integers, in either form
  for (
    const size of [0, -4, 12.5, { height: 0, width: 8 }, { height: 8, width: -1 }, { height: 8, width: 7.5 }]
  ) {
    assertThrows(
      () => parseImageProcessorConfig({ size }, vit, "/p/preprocessor_config.json"),
      `/p/preprocessor_config.json: "size" must be {"height", "width"} or one number, positive integers`,
    );
  }
  // DeiT's resize-then-crop is not followed: refused rather than silently skipped
  assertThrows(
    () =>
      parseImageProcessorConfig({ do_center_crop: true, crop_size: 224 }, vit, "/p/preprocessor_config.json"),
    `/p/preprocessor_config.json: "do_center_crop": true is not supported`,
  );
  assertEquals(parseImageProcessorConfig({ do_center_crop: false }, vit, "/p").width, 32);
  const e = assertThrows(
    () =>
      preprocessImage(
        { width: 4, height: 4, data: new Uint8Array(47) },
        parseImageProcessorConfig(null, vit, ""),
      ),
    "a 4×4 RGB image has 48 values, got 47",
  );
  assert(e instanceof ImageError);
  const dir = await Deno.makeTempDir({ prefix: "hartley_img_" });
  try {
    await Deno.writeTextFile(`${dir}/preprocessor_config.json`, "{");
    await assertRejects(
      () => loadImageProcessorConfig(dir, vit),
      ImageError,
      `${dir}/preprocessor_config.json: invalid JSON`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the ViT reference input has the shape preprocessing produces", async () => {
  const ref = await openSafetensors(`${VIT}reference.safetensors`);
  const shape = ref.info("input.pixel_values").shape;
  assertEquals(shape.slice(1), [3, vit.imageSize, vit.imageSize]);
});
