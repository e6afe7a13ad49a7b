import { assert, assertClose, assertThrows } from "./assert.ts";
import { getGpu, type Gpu, readF32, upload } from "../lib/gpu/mod.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { transformRef } from "../lib/spectral/reference.ts";
import { encodeTransform2d, type Transform, TRANSFORMS } from "../lib/spectral/transforms.ts";
import { formatParity, spectralParity, spectralParityRows } from "../tools/parity_spectral.ts";
import { main as parityMain } from "../tools/parity.ts";

const TOL = 1e-5;
const FIXTURE = new URL("./fixtures/dht_reference.safetensors", import.meta.url).pathname;

function random(count: number, seed: number): Float32Array {
  const rng = new Prng(seed);
  return Float32Array.from({ length: count }, () => rng.uniform() * 2 - 1);
}

async function transform(
  gpu: Gpu,
  kind: Transform,
  x: Float32Array,
  m: number,
  n: number,
  scale?: number,
): Promise<Float32Array> {
  const src = upload(gpu, x);
  const dst = gpu.pool.acquire(x.byteLength);
  encodeTransform2d(gpu, kind, src, dst, m, n, { scale });
  const y = await readF32(gpu, dst, m * n);
  gpu.pool.release(src);
  gpu.pool.release(dst);
  return y;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

// Awkward shapes: vectors, primes, a Bluestein side (97), non-square both ways, M > 32 and
// N > 32 (several transpose tiles, partial ones).
const SHAPES: [number, number][] = [[1, 1], [1, 7], [6, 1], [5, 3], [7, 43], [12, 20], [13, 97], [40, 33]];

for (const kind of TRANSFORMS) {
  Deno.test(`${kind} matches the float64 definition on awkward shapes`, async () => {
    const gpu = await getGpu();
    for (const [m, n] of SHAPES) {
      const x = random(m * n, m * 1000 + n);
      assertClose(await transform(gpu, kind, x, m, n), transformRef(kind, x, m, n), TOL, `${kind} ${m}×${n}`);
    }
  });

  Deno.test(`${kind} is self-adjoint: <G, T(S)> = <T(G), S>`, async () => {
    const gpu = await getGpu();
    for (const [m, n] of [[7, 43], [12, 20], [33, 8]]) {
      const s = random(m * n, 1), g = random(m * n, 2);
      const lhs = dot(g, await transform(gpu, kind, s, m, n));
      const rhs = dot(await transform(gpu, kind, g, m, n), s);
      const size = Math.sqrt(dot(g, g) * dot(s, s) * m * n); // scale of either side
      assert(Math.abs(lhs - rhs) <= TOL * size, `${kind} ${m}×${n}: ${lhs} vs ${rhs}`);
    }
  });
}

Deno.test("dht and dht2d are involutions up to M·N; scale applies", async () => {
  const gpu = await getGpu();
  for (const kind of ["dht", "dht2d"] as const) {
    for (const [m, n] of [[5, 3], [12, 20], [7, 43]]) {
      const x = random(m * n, 9);
      const once = await transform(gpu, kind, x, m, n, 0.5);
      assertClose(once, transformRef(kind, x, m, n).map((v) => 0.5 * v), TOL, `${kind} scale`);
      const back = await transform(gpu, kind, once, m, n, 2 / (m * n));
      assertClose(back, x, TOL, `${kind} ${m}×${n} twice`);
    }
  }
});

Deno.test("2-D transforms in place (src = dst)", async () => {
  const gpu = await getGpu();
  for (const kind of TRANSFORMS) {
    const [m, n] = [12, 20];
    const x = random(m * n, 4);
    const buf = upload(gpu, x);
    encodeTransform2d(gpu, kind, buf, buf, m, n);
    assertClose(await readF32(gpu, buf, m * n), transformRef(kind, x, m, n), TOL, `${kind} in place`);
    gpu.pool.release(buf);
  }
});

Deno.test("2-D transforms reject bad kinds, shapes and short buffers", async () => {
  const gpu = await getGpu();
  const buf = gpu.pool.acquire(64);
  assertThrows(() => encodeTransform2d(gpu, "fft" as Transform, buf, buf, 2, 2), "unknown transform 'fft'");
  assertThrows(() => encodeTransform2d(gpu, "dht", buf, buf, 0, 2), "rows must be an integer ≥ 1");
  assertThrows(() => encodeTransform2d(gpu, "dft", buf, buf, 3, 1.5), "columns must be an integer ≥ 1");
  assertThrows(() => encodeTransform2d(gpu, "dht2d", buf, buf, 5, 5), "100 needed");
  gpu.pool.release(buf);
});

Deno.test("parity against the float64 fixture (tools/parity)", async () => {
  const rows = await spectralParityRows(FIXTURE);
  assert(rows.length === 32, `expected 8 sizes × 4 references, got ${rows.length}`);
  const bad = rows.filter((r) => !(r.relL2 <= TOL));
  assert(bad.length === 0, `above ${TOL}:\n${formatParity(bad, TOL)}`);
  const { log, error } = console;
  console.log = console.error = () => {};
  try {
    assert(await spectralParity(FIXTURE, TOL), "spectralParity returns true on the fixture");
    assert(!await spectralParity(FIXTURE, 1e-12), "and false with an impossible tolerance");
    assert(await parityMain([FIXTURE, "--tol", "1e-5"]) === 0, "exit code 0");
    assert(await parityMain([]) === 2, "exit code 2 without a file");
  } finally {
    console.log = log;
    console.error = error;
  }
});
