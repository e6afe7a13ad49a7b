import { assertClose, assertEquals, assertThrows } from "./assert.ts";
import { getGpu, readF32, upload } from "../lib/gpu/mod.ts";
import { Prng } from "../lib/spectral/prng.ts";
import {
  basisReference,
  checkPositions,
  effectiveDense,
  effectiveEntries,
  encodeAdd,
  SparseSpectrum,
} from "../lib/spectral/sparse.ts";
import type { Transform } from "../lib/spectral/transforms.ts";

const TRANSFORMS: Transform[] = ["dht", "dht2d", "dft"];
const SHAPES: [number, number][] = [[7, 12], [20, 43], [1, 5], [8, 1]];

/** `count` distinct positions of an m×n spectrum, always including (0, 0) and a mirror pair. */
function testPositions(m: number, n: number, count: number, seed: number): Int32Array {
  const p = new Prng(seed);
  const flats = new Set<number>([0, (m - 1) * n + (n - 1), (1 % m) * n + (1 % n)]);
  while (flats.size < Math.min(count, m * n)) flats.add(p.below(m * n));
  return Int32Array.from([...flats].slice(0, count).flatMap((f) => [Math.floor(f / n), f % n]));
}

function randn(p: Prng, count: number): Float32Array {
  return p.normals(count);
}

Deno.test("S̃ folds every transform into the separable C_M S̃ C_N", () => {
  for (const [m, n] of [...SHAPES, [6, 10] as [number, number]]) {
    const positions = testPositions(m, n, Math.min(9, m * n), m + n);
    const coef = randn(new Prng(m * n), positions.length / 2);
    for (const transform of TRANSFORMS) {
      const sTilde = effectiveDense(positions, coef, m, n, transform);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let viaDht = 0, direct = 0;
          for (let u = 0; u < m; u++) {
            for (let v = 0; v < n; v++) viaDht += sTilde[u * n + v] * basisReference("dht", m, n, u, v, i, j);
          }
          for (let k = 0; k < coef.length; k++) {
            direct += coef[k] * basisReference(transform, m, n, positions[2 * k], positions[2 * k + 1], i, j);
          }
          if (Math.abs(viaDht - direct) > 1e-9) throw new Error(`${transform} ${m}×${n} (${i}, ${j})`);
        }
      }
    }
  }
});

Deno.test("effective entries merge coincident fix-ups and drop zeros", () => {
  // (0, 1) in a 4×6 dht2d: ½+½ at (0, 1), ½−½ at (0, 5) → one entry of weight 1.
  assertEquals(effectiveEntries(new Int32Array([0, 1]), 4, 6, "dht2d"), [{
    row: 0,
    col: 1,
    coef: 0,
    weight: 1,
  }]);
  // (0, 0) in dft: ½ + ½ at (0, 0).
  assertEquals(effectiveEntries(new Int32Array([0, 0]), 4, 6, "dft"), [{
    row: 0,
    col: 0,
    coef: 0,
    weight: 1,
  }]);
  assertEquals(effectiveEntries(new Int32Array([1, 2]), 4, 6, "dht2d").length, 4);
  assertThrows(() => checkPositions(new Int32Array([1, 2, 1, 2]), 4, 6), "appears twice");
  assertThrows(() => checkPositions(new Int32Array([4, 0]), 4, 6), "outside");
  assertThrows(() => checkPositions(new Int32Array([0, -1]), 4, 6), "outside");
  assertThrows(() => checkPositions(new Int32Array([1, 2, 3]), 4, 6), "pairs");
  assertThrows(() => checkPositions(new Int32Array(0), 4, 6), "pairs");
  assertThrows(() => checkPositions(new Int32Array([0, 0]), 0, 6), "shape");
});

Deno.test("sparse products by rows and by columns match S̃ x and S̃ᵀ d", async () => {
  const gpu = await getGpu();
  for (const [m, n] of SHAPES) {
    for (const transform of TRANSFORMS) {
      for (const tokens of [1, 13]) {
        const p = new Prng(m * 1000 + n * 10 + tokens);
        const positions = testPositions(m, n, Math.min(10, m * n), m * n);
        const coef = randn(p, positions.length / 2);
        const x = randn(p, tokens * n), d = randn(p, tokens * m);
        const sTilde = effectiveDense(positions, coef, m, n, transform);
        const zRef = new Float64Array(tokens * m), wRef = new Float64Array(tokens * n);
        for (let t = 0; t < tokens; t++) {
          for (let u = 0; u < m; u++) {
            for (let v = 0; v < n; v++) {
              zRef[t * m + u] += sTilde[u * n + v] * x[t * n + v];
              wRef[t * n + v] += sTilde[u * n + v] * d[t * m + u];
            }
          }
        }
        const s = new SparseSpectrum(gpu, positions, m, n, transform);
        const c = upload(gpu, coef),
          z = gpu.pool.acquire(tokens * m * 4),
          w = gpu.pool.acquire(tokens * n * 4);
        s.encodeProduct("rows", c, upload(gpu, x), z, tokens);
        s.encodeProduct("cols", c, upload(gpu, d), w, tokens);
        const what = `${transform} ${m}×${n} T=${tokens}`;
        assertClose(await readF32(gpu, z, tokens * m), zRef, 1e-6, `rows ${what}`);
        assertClose(await readF32(gpu, w, tokens * n), wRef, 1e-6, `cols ${what}`);
        s.dispose();
      }
    }
  }
});

Deno.test("gradient reduction over tokens, overwrite and accumulate", async () => {
  const gpu = await getGpu();
  // The last case has T·E > 131072, so token chunks are longer than the minimum.
  const cases: [number, number, number[], number][] = [
    ...SHAPES.map(([m, n]) => [m, n, [1, 13, 600], 7] as [number, number, number[], number]),
    [48, 40, [300], 1000],
  ];
  for (const [m, n, tokenCounts, requested] of cases) {
    for (const transform of TRANSFORMS) {
      for (const tokens of tokenCounts) {
        const p = new Prng(m + n + tokens);
        const positions = testPositions(m, n, Math.min(requested, m * n), tokens);
        const count = positions.length / 2;
        const a = randn(p, tokens * m), b = randn(p, tokens * n), g0 = randn(p, count);
        const scale = 0.37;
        const want = Float64Array.from(g0);
        for (const e of effectiveEntries(positions, m, n, transform)) {
          let acc = 0;
          for (let t = 0; t < tokens; t++) acc += a[t * m + e.row] * b[t * n + e.col];
          want[e.coef] += scale * e.weight * acc;
        }
        const s = new SparseSpectrum(gpu, positions, m, n, transform);
        const dc = upload(gpu, g0), ab = upload(gpu, a), bb = upload(gpu, b);
        s.encodeGrad(ab, bb, dc, tokens, scale, true);
        const what = `${transform} ${m}×${n} T=${tokens}`;
        assertClose(await readF32(gpu, dc, count), want, 1e-6, `accumulate ${what}`);
        s.encodeGrad(ab, bb, dc, tokens, scale, false);
        assertClose(
          await readF32(gpu, dc, count),
          want.map((v, k) => v - g0[k]),
          1e-5,
          `overwrite ${what}`,
        );
        s.dispose();
      }
    }
  }
});

Deno.test("scatter (both orientations) and gather at the positions", async () => {
  const gpu = await getGpu();
  for (const [m, n] of SHAPES) {
    const p = new Prng(m * n + 5);
    const positions = testPositions(m, n, Math.min(11, m * n), 3);
    const count = positions.length / 2;
    const coef = randn(p, count);
    const s = new SparseSpectrum(gpu, positions, m, n, "dht2d");
    const c = upload(gpu, coef);
    const dense = upload(gpu, randn(p, m * n)), denseT = upload(gpu, randn(p, m * n));
    s.encodeScatter(c, dense);
    s.encodeScatter(c, denseT, true);
    const want = new Float32Array(m * n), wantT = new Float32Array(m * n);
    for (let k = 0; k < count; k++) {
      const u = positions[2 * k], v = positions[2 * k + 1];
      want[u * n + v] = coef[k];
      wantT[v * m + u] = coef[k];
    }
    assertEquals(Array.from(await readF32(gpu, dense, m * n)), Array.from(want));
    assertEquals(Array.from(await readF32(gpu, denseT, m * n)), Array.from(wantT));
    const src = randn(p, m * n), base = randn(p, count);
    const dst = upload(gpu, base);
    s.encodeGather(upload(gpu, src), dst, 2, true);
    const gathered = Array.from(
      { length: count },
      (_, k) => src[positions[2 * k] * n + positions[2 * k + 1]],
    );
    assertClose(await readF32(gpu, dst, count), gathered.map((g, k) => base[k] + 2 * g), 1e-7);
    s.encodeGather(upload(gpu, src), dst, 1, false);
    assertEquals(Array.from(await readF32(gpu, dst, count)), gathered);
    s.dispose();
    assertThrows(() => s.encodeGather(dst, dst, 1, false), "after dispose");
  }
});

Deno.test("encodeAdd adds element-wise", async () => {
  const gpu = await getGpu();
  const p = new Prng(1);
  const x = randn(p, 1031), y = randn(p, 1031);
  const yb = upload(gpu, y);
  encodeAdd(gpu, upload(gpu, x), yb, 1031);
  assertEquals(Array.from(await readF32(gpu, yb, 1031)), Array.from(x, (v, i) => Math.fround(v + y[i])));
});
