import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { getGpu, readF32, upload } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { Prng } from "../lib/spectral/prng.ts";
import {
  encodeEnergy,
  energyReference,
  roundHalfEven,
  sampleRemainder,
  selectPositions,
  topkEnergy,
  topkReference,
} from "../lib/spectral/select.ts";
import type { Transform } from "../lib/spectral/transforms.ts";

const TRANSFORMS: Transform[] = ["dht", "dht2d", "dft"];

Deno.test("Prng reproduces the documented stream", () => {
  // Expected values from independent C and Python implementations of the module doc's steps.
  const first5 = (seed: number) => {
    const p = new Prng(seed);
    return Array.from({ length: 5 }, () => p.u32());
  };
  assertEquals(first5(0), [3809008728, 1133695204, 53579671, 2891528803, 139681546]);
  assertEquals(first5(42), [2837322924, 544945897, 479756282, 3500138142, 339756180]);
  assertEquals(first5(2 ** 40 + 7), [1004282400, 2201496047, 1929548009, 4280324244, 2949626423]);
  const p = new Prng(7);
  assertEquals([1, 2, 3, 1000, 3e9, 2 ** 32].map((b) => p.below(b)), [0, 1, 2, 228, 2429532727, 2033801169]);
  const q = new Prng(3);
  assertEquals([q.uniform(), q.uniform()], [0.7191480967694305, 0.3831162377810907]);
  const r = new Prng(11);
  const normals = [r.normal(), r.normal(), r.normal(), r.normal()];
  const expected = [-0.019483366663181022, 0.023967030312769526, 0.8923889906829567, -0.1725237931527085];
  normals.forEach((z, i) => assert(Math.abs(z - expected[i]) < 1e-15, `normal ${i}: ${z} vs ${expected[i]}`));
  assertThrows(() => new Prng(-1), "seed");
  assertThrows(() => new Prng(0.5), "seed");
  assertThrows(() => p.below(0), "bound");
  assertThrows(() => p.below(2 ** 32 + 1), "bound");
});

Deno.test("Prng ranges are in bounds and roughly uniform; normals have unit moments", () => {
  const p = new Prng(123);
  const counts = new Array(7).fill(0);
  for (let i = 0; i < 70000; i++) counts[p.below(7)]++;
  for (const c of counts) assert(Math.abs(c - 10000) < 500, `bucket count ${c}`);
  const z = new Prng(5).normals(20000);
  const mean = z.reduce((a, b) => a + b, 0) / z.length;
  const variance = z.reduce((a, b) => a + (b - mean) ** 2, 0) / z.length;
  assert(Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.05, `mean ${mean} variance ${variance}`);
});

/** f32 values with many ties: `distinct` levels, some zeros, a few special values. */
function tiedValues(size: number, distinct: number, seed: number): Float32Array {
  const p = new Prng(seed);
  const levels = Float32Array.from({ length: distinct }, () => p.uniform() * 10);
  const out = Float32Array.from({ length: size }, () => levels[p.below(distinct)]);
  for (let i = 0; i < size; i += 97) out[i] = 0;
  if (size > 20) out.set([1e-40, 3e38, Infinity, 1e-45], 11);
  return out;
}

Deno.test("topkEnergy matches a full sort on ties, zeros and awkward sizes", async () => {
  const gpu = await getGpu();
  const cases: [Float32Array, number[]][] = [
    [new Float32Array([2.5]), [1]],
    [new Float32Array(7), [1, 3, 7]],
    [tiedValues(4097, 4, 1), [1, 100, 4096, 4097]],
    [tiedValues(12345, 3000, 2), [1000, 12345]],
    [Float32Array.from({ length: 30001 }, (_, i) => (i % 1009 === 0 ? i : 0)), [10, 29, 31, 500]],
    // More than 256 blocks of 4096, so the block scan takes several chunks.
    [tiedValues(1_100_007, 50, 3), [5000]],
  ];
  for (const [values, ks] of cases) {
    const buf = upload(gpu, values);
    for (const k of ks) {
      const got = await topkEnergy(gpu, buf, values.length, k);
      assertEquals(Array.from(got), topkReference(values, k), `size ${values.length} k ${k}`);
    }
    gpu.pool.release(buf);
  }
  assertEquals(Array.from(await topkEnergy(gpu, upload(gpu, new Float32Array(5)), 5, 0)), []);
});

Deno.test("topkEnergy rejects NaN, negatives and bad k", async () => {
  const gpu = await getGpu();
  const buf = upload(gpu, new Float32Array([1, 2, NaN, 0]));
  await assertRejects(() => topkEnergy(gpu, buf, 4, 1), RangeError, "NaN");
  await assertRejects(
    () => topkEnergy(gpu, upload(gpu, new Float32Array([1, -2, 3])), 3, 3),
    RangeError,
    "negative",
  );
  await assertRejects(() => topkEnergy(gpu, buf, 4, 5), RangeError, "k must be");
  await assertRejects(() => topkEnergy(gpu, buf, 400, 5), RangeError, "holds");
});

Deno.test("sampleRemainder is uniform, disjoint, sorted and reproducible", () => {
  // Pinned against an independent Python implementation of the documented algorithm.
  assertEquals(Array.from(sampleRemainder([3, 10, 500, 999], 1000, 10, 5)), [
    85,
    146,
    233,
    361,
    765,
    767,
    880,
    891,
    901,
    989,
  ]);
  assertEquals(
    Array.from(sampleRemainder([2, 0, 1], 20, 17, 9)),
    Array.from({ length: 17 }, (_, i) => i + 3),
  );
  const selected = [2, 5];
  const hits = new Array(10).fill(0);
  for (let seed = 0; seed < 4000; seed++) {
    const got = Array.from(sampleRemainder(selected, 10, 3, seed));
    assertEquals(got.length, 3);
    assert(got.every((v, i) => i === 0 || v > got[i - 1]), "ascending");
    for (const v of got) hits[v]++;
  }
  assertEquals(hits[2] + hits[5], 0);
  for (const [i, h] of hits.entries()) {
    if (i !== 2 && i !== 5) assert(Math.abs(h - 1500) < 150, `slot ${i}: ${h}`);
  }
  assertThrows(() => sampleRemainder([1, 1], 10, 1, 0), "distinct");
  assertThrows(() => sampleRemainder([1], 10, 10, 0), "count");
});

Deno.test("encodeEnergy matches T(W)² in float64 (both storage orientations)", async () => {
  const gpu = await getGpu();
  for (const [m, n] of [[7, 12], [1, 5], [20, 43], [6, 1]]) {
    const p = new Prng(m * 100 + n);
    const w = Float32Array.from({ length: m * n }, () => p.normal());
    const wt = Float32Array.from({ length: m * n }, (_, i) => w[(i % m) * n + Math.floor(i / m)]);
    for (const transform of TRANSFORMS) {
      const want = energyReference(transform, w, m, n);
      for (const [data, transposed] of [[w, false], [wt, true]] as const) {
        const e = encodeEnergy(gpu, transform, upload(gpu, data), m, n, { transposed });
        assertClose(
          await readF32(gpu, e, m * n),
          want,
          1e-5,
          `${transform} ${m}×${n} transposed=${transposed}`,
        );
        gpu.pool.release(e);
      }
      assertClose(energyReference(transform, wt, m, n, true), want, 1e-12, "reference orientation");
    }
  }
});

Deno.test("dft energies of mirror pairs tie exactly, so the smaller index wins", async () => {
  const gpu = await getGpu();
  const m = 6, n = 10;
  const p = new Prng(77);
  const w = Float32Array.from({ length: m * n }, () => p.normal());
  const e = await readF32(gpu, encodeEnergy(gpu, "dft", upload(gpu, w), m, n), m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      assertEquals(e[i * n + j], e[((m - i) % m) * n + (n - j) % n], `(${i}, ${j})`);
    }
  }
});

Deno.test("energy top-8 equals the PyTorch fixtures of every family (GPT-2 Conv1D transposed)", async () => {
  const gpu = await getGpu();
  for (const family of ["gpt2", "llama", "bert", "roberta", "vit"]) {
    const dir = new URL(`./fixtures/models/${family}/`, import.meta.url);
    const model = await openSafetensors(new URL("model.safetensors", dir).pathname);
    const reference = await openSafetensors(new URL("reference.safetensors", dir).pathname);
    const { targets } = JSON.parse(await Deno.readTextFile(new URL("reference.json", dir)));
    for (const target of targets as string[]) {
      const [rows, cols] = model.info(`${target}.weight`).shape;
      const transposed = family === "gpt2";
      const [m, n] = transposed ? [cols, rows] : [rows, cols];
      const weight = upload(gpu, await model.readF32(`${target}.weight`));
      for (const transform of TRANSFORMS) {
        const expected = Array.from(
          await reference.read(`select.${transform}.${target}.energy_top8`) as Int32Array,
        );
        const energy = encodeEnergy(gpu, transform, weight, m, n, { transposed });
        const got = Array.from(await topkEnergy(gpu, energy, m * n, 8));
        gpu.pool.release(energy);
        const what = `${family} ${target} ${transform}`;
        if (transform !== "dft") {
          assertEquals(got, expected, what);
        } else {
          // T(−i,−j) = T(i,j) exactly for the dft; the fixture ordered such tied mirror pairs
          // by float64 rounding noise, we by index as SPEC §1.4 says. Compare pair by pair.
          const pair = (f: number) => {
            const u = Math.floor(f / n), v = f % n;
            return Math.min(f, ((m - u) % m) * n + (n - v) % n);
          };
          assertEquals(got.map(pair), expected.map(pair), `${what} pairs`);
          assertEquals([...got].sort((a, b) => a - b), [...expected].sort((a, b) => a - b), `${what} set`);
        }
      }
      const positions = await selectPositions(gpu, weight, m, n, {
        n: 8,
        energyRatio: 1,
        transform: "dht2d",
        seed: 0,
        transposed,
      });
      const expected = Array.from(await reference.read(`select.dht2d.${target}.energy_top8`) as Int32Array);
      assertEquals(
        Array.from(positions),
        expected.flatMap((f) => [Math.floor(f / n), f % n]),
        `${target} positions`,
      );
      gpu.pool.release(weight);
    }
  }
});

Deno.test("selectPositions: energy part first, then the seeded remainder; validation", async () => {
  const gpu = await getGpu();
  const m = 9, n = 11;
  const p = new Prng(4);
  const w = Float32Array.from({ length: m * n }, () => p.normal());
  const weight = upload(gpu, w);
  const opts = { n: 20, energyRatio: 0.7, transform: "dht2d" as Transform, seed: 3 };
  const got = await selectPositions(gpu, weight, m, n, opts);
  const flat = Array.from({ length: 20 }, (_, i) => got[2 * i] * n + got[2 * i + 1]);
  const top = topkReference(energyReference("dht2d", w, m, n), 14);
  assertEquals(flat.slice(0, 14), top);
  assertEquals(flat.slice(14), Array.from(sampleRemainder(top, m * n, 6, 3)));
  assertEquals(Array.from(await selectPositions(gpu, weight, m, n, opts)), Array.from(got), "deterministic");
  const all = await selectPositions(gpu, weight, m, n, { ...opts, n: m * n, energyRatio: 0.5 });
  const seen = new Set(Array.from({ length: m * n }, (_, i) => all[2 * i] * n + all[2 * i + 1]));
  assertEquals(seen.size, m * n);
  const random = await selectPositions(gpu, weight, m, n, { ...opts, energyRatio: 0 });
  assertEquals(
    Array.from(random),
    Array.from(sampleRemainder([], m * n, 20, 3)).flatMap((f) => [Math.floor(f / n), f % n]),
  );
  const bad: [Partial<typeof opts>, string][] = [
    [{ n: 0 }, "n must be"],
    [{ n: m * n + 1 }, "n must be"],
    [{ n: 2.5 }, "n must be"],
    [{ energyRatio: 1.5 }, "energyRatio"],
    [{ energyRatio: NaN }, "energyRatio"],
  ];
  for (const [change, match] of bad) {
    await assertRejects(() => selectPositions(gpu, weight, m, n, { ...opts, ...change }), RangeError, match);
  }
  await assertRejects(() => selectPositions(gpu, weight, m, n + 5, opts), RangeError, "need M·N");
  await assertRejects(() => selectPositions(gpu, weight, 0, n, opts), RangeError, "shape");
  await assertRejects(
    () => selectPositions(gpu, weight, m, n, { ...opts, transform: "fft" as Transform }),
    RangeError,
    "unknown transform",
  );
});

Deno.test("n_e rounds halves to even, as Python's round", () => {
  assertEquals([0.5, 1.5, 2.5, 3.5, 10.499999999999998, -0.5].map(roundHalfEven), [0, 2, 2, 4, 10, -0]);
});
