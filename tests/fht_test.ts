import { assert, assertClose, assertThrows } from "./assert.ts";
import { getGpu, type Gpu, readF32, upload } from "../lib/gpu/mod.ts";
import { f16ToF32, f32ToF16 } from "../lib/io/dtype.ts";
import { encodeFht, planFht } from "../lib/spectral/fht.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { dhtRowsRef } from "../lib/spectral/reference.ts";

/** f32 tolerance for transforms (CONVENTIONS). */
const TOL = 1e-5;

function random(count: number, seed: number): Float32Array {
  const rng = new Prng(seed);
  return Float32Array.from({ length: count }, () => rng.uniform() * 2 - 1);
}

async function fht(
  gpu: Gpu,
  x: Float32Array,
  rows: number,
  n: number,
  scale?: number,
): Promise<Float32Array> {
  const src = upload(gpu, x);
  const dst = gpu.pool.acquire(x.byteLength);
  encodeFht(gpu, src, dst, rows, n, { scale });
  const y = await readF32(gpu, dst, rows * n);
  gpu.pool.release(src);
  gpu.pool.release(dst);
  return y;
}

// Every plan kind: single-pass, mixed radix, loop-form primes (43), Bluestein in one workgroup
// (97, 1009), split halves (5120 on 32 KiB of workgroup memory), four-step (11008 = 2^8·43,
// 14336 = 2^11·7 on 32 KiB) and Bluestein over four-step (4099, a prime whose chirp length
// exceeds workgroup memory). Odd row counts exercise the zero partner row of the last pair.
const LENGTHS: [n: number, rows: number][] = [
  [1, 3],
  [2, 5],
  [3, 5],
  [5, 3],
  [7, 5],
  [8, 3],
  [12, 5],
  [20, 250], // more than one workgroup of row pairs
  [43, 5],
  [64, 3],
  [97, 5],
  [192, 5],
  [768, 3],
  [1000, 3],
  [1009, 3],
  [4096, 2],
  [5120, 1],
  [5504, 1], // 2^7·43: loop-form radix with split halves
  [4099, 3],
  [11008, 3],
  [14336, 2],
];

for (const [n, rows] of LENGTHS) {
  Deno.test(`FHT of ${rows} × ${n} matches the float64 reference`, async () => {
    const gpu = await getGpu();
    const x = random(rows * n, n);
    const y = await fht(gpu, x, rows, n);
    assertClose(y, dhtRowsRef(x, rows, n), TOL, `n=${n} (${planFht(gpu, n).kind})`);
  });
}

Deno.test("FHT scale, and FHT(FHT(x)) = n·x", async () => {
  const gpu = await getGpu();
  for (const n of [12, 97, 768]) {
    const x = random(3 * n, 7);
    const y = await fht(gpu, x, 3, n, 0.25);
    assertClose(y, dhtRowsRef(x, 3, n).map((v) => 0.25 * v), TOL, `scale n=${n}`);
    const back = await fht(gpu, await fht(gpu, x, 3, n), 3, n, 1 / n);
    assertClose(back, x, TOL, `involution n=${n}`);
  }
});

Deno.test("FHT of strided input rows (columns of a wider matrix) on every plan kind", async () => {
  const gpu = await getGpu();
  // shared, Bluestein in one workgroup, four-step, Bluestein over four-step
  for (const [n, rows] of [[20, 7], [97, 3], [14336, 2], [4099, 3]]) {
    const ld = 3 * n + 1, offset = n + 2; // the second block of n of each row, odd stride
    const wide = random(offset + rows * ld, 5 + n);
    const x = Float32Array.from(
      { length: rows * n },
      (_, i) => wide[offset + Math.floor(i / n) * ld + (i % n)],
    );
    const src = upload(gpu, wide), dst = gpu.pool.acquire(rows * n * 4);
    encodeFht(gpu, src, dst, rows, n, { input: { ld, offset } });
    assertClose(await readF32(gpu, dst, rows * n), dhtRowsRef(x, rows, n), TOL, `strided n=${n}`);
    gpu.pool.release(src);
    gpu.pool.release(dst);
  }
  const buf = gpu.pool.acquire(64);
  assertThrows(() => encodeFht(gpu, buf, buf, 1, 4, { input: { ld: 8 } }), "cannot be transformed in place");
  assertThrows(() => encodeFht(gpu, buf, gpu.pool.acquire(64), 1, 4, { input: { ld: 3 } }), "ld ≥ n = 4");
  assertThrows(
    () => encodeFht(gpu, buf, gpu.pool.acquire(64), 3, 4, { input: { ld: 8, offset: 1 } }),
    "need 84",
  );
  gpu.pool.release(buf);
});

Deno.test("FHT in place (src = dst) on every plan kind", async () => {
  const gpu = await getGpu();
  for (const [n, rows] of [[20, 7], [97, 3], [14336, 1], [4099, 1]]) {
    const x = random(rows * n, 3 + n);
    const buf = upload(gpu, x);
    encodeFht(gpu, buf, buf, rows, n);
    assertClose(await readF32(gpu, buf, rows * n), dhtRowsRef(x, rows, n), TOL, `in place n=${n}`);
    gpu.pool.release(buf);
  }
});

Deno.test({
  name: "FHT with f16 storage",
  ignore: !(await getGpu()).f16,
  fn: async () => {
    const gpu = await getGpu();
    for (const [n, rows, inPlace] of [[768, 3, false], [97, 2, true], [14336, 2, false]] as const) {
      const bits = f32ToF16(random(rows * n, 11));
      const x = f16ToF32(bits); // the values the GPU sees
      const src = upload(gpu, bits);
      const dst = inPlace ? src : gpu.pool.acquire(rows * n * 2);
      const scale = 1 / Math.sqrt(n);
      encodeFht(gpu, src, dst, rows, n, { f16: true, scale });
      const y = f16ToF32(
        new Uint16Array(await gpu.stream.read(dst, Math.ceil(rows * n / 2) * 4)).subarray(0, rows * n),
      );
      // Compute is f32; the only loss is rounding each output to f16 (relative 2^-11 at most,
      // 2^-11/√3 ≈ 2.8e-4 RMS), so 1e-3 leaves room without hiding a real error (a wrong
      // element costs more than 1e-2).
      assertClose(y, dhtRowsRef(x, rows, n).map((v) => v * scale), 1e-3, `f16 n=${n}`);
    }
  },
});

Deno.test("FHT rejects bad lengths, short buffers and f16 without shader-f16", async () => {
  const gpu = await getGpu();
  const buf = gpu.pool.acquire(64);
  assertThrows(() => encodeFht(gpu, buf, buf, 1, 0), "integer ≥ 1");
  assertThrows(() => planFht(gpu, 2.5), "integer ≥ 1");
  assertThrows(() => encodeFht(gpu, buf, buf, -1, 4), "row count");
  assertThrows(() => encodeFht(gpu, buf, buf, 5, 8), "need 160");
  assertThrows(() => planFht(gpu, 2 ** 40), "too large");
  const noF16 = Object.create(gpu, { f16: { value: false } }) as Gpu;
  assertThrows(() => encodeFht(noF16, buf, buf, 1, 4, { f16: true }), "shader-f16");
  gpu.pool.release(buf);
});

Deno.test("FHT plans are cached per device and length", async () => {
  const gpu = await getGpu();
  assert(planFht(gpu, 768).description === planFht(gpu, 768).description);
  const before = gpu.pipelines.size;
  const x = random(2 * 768, 5);
  await fht(gpu, x, 2, 768);
  await fht(gpu, x, 2, 768);
  assert(gpu.pipelines.size <= before + 1, "one pipeline per plan variant");
});
