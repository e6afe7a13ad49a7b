import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { getGpu, readF32, upload } from "../lib/gpu/mod.ts";
import type { Gpu } from "../lib/gpu/device.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { deltaWReference, SpectralAdapterOp } from "../lib/spectral/adapter_op.ts";
import { COEF_GRAD_HEURISTICS } from "../lib/spectral/coef_grad.ts";
import { DELTA_WEIGHT_HEURISTICS, encodeDeltaWeight } from "../lib/spectral/delta_weight.ts";
import type { Transform } from "../lib/spectral/transforms.ts";
import { matmulT, spectralReference, testPositions, transpose } from "./spectral_helpers.ts";

const TRANSFORMS: Transform[] = ["dht", "dht2d", "dft"];
const SHAPES: [number, number][] = [[7, 12], [20, 43], [1, 5], [6, 10]];
const TOL = 1e-5;

Deno.test("forward, backward, coefGradient and materialize match the dense float64 reference", async () => {
  const gpu = await getGpu();
  for (const [m, n] of SHAPES) {
    for (const transform of TRANSFORMS) {
      for (const tokens of [1, 13]) {
        const p = new Prng(m * 7919 + n * 31 + tokens);
        const positions = testPositions(m, n, Math.min(12, m * n), m + n);
        const count = positions.length / 2;
        const alpha = 20;
        const coef = p.normals(count), x = p.normals(tokens * n), dy = p.normals(tokens * m);
        const want = spectralReference(positions, coef, m, n, transform, alpha, x, dy, tokens);
        const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha });
        const c = upload(gpu, coef), xb = upload(gpu, x), dyb = upload(gpu, dy);
        const y = gpu.pool.acquire(tokens * m * 4), dx = gpu.pool.acquire(tokens * n * 4);
        const dc = gpu.pool.acquire(count * 4), dw = gpu.pool.acquire(m * n * 4);
        const saved = op.forward(xb, c, y, tokens, { accumulate: false })!;
        op.backward(saved, dyb, c, dx, dc, { accumulateDx: false, accumulateGrad: false });
        op.materialize(c, dw);
        const what = `${transform} ${m}×${n} T=${tokens}`;
        assertClose(await readF32(gpu, y, tokens * m), want.y, TOL, `y ${what}`);
        assertClose(await readF32(gpu, dx, tokens * n), want.dx, TOL, `dx ${what}`);
        assertClose(await readF32(gpu, dc, count), want.dc, TOL, `dc ${what}`);
        assertClose(await readF32(gpu, dw, m * n), want.dw, TOL, `ΔW ${what}`);
        op.materialize(c, dw, { transposed: true });
        assertClose(await readF32(gpu, dw, m * n), transpose(want.dw, m, n), TOL, `ΔWᵀ ${what}`);
        const g = upload(gpu, Float32Array.from(want.g));
        op.denseGradient(g, dc, { accumulate: false });
        assertClose(await readF32(gpu, dc, count), want.dc, TOL, `dense dc ${what}`);
        op.coefGradient(xb, dyb, tokens, dc, { accumulate: false });
        assertClose(await readF32(gpu, dc, count), want.dc, TOL, `dc from x and δ ${what}`);
        for (const b of [c, xb, dyb, y, dx, dc, dw, g]) gpu.pool.release(b);
        op.dispose();
      }
    }
  }
});

Deno.test("forward, backward and materialize accumulate into their outputs", async () => {
  const gpu = await getGpu();
  const m = 9, n = 14, tokens = 5, alpha = 150;
  for (const transform of TRANSFORMS) {
    const p = new Prng(99);
    const positions = testPositions(m, n, 10, 4);
    const coef = p.normals(10), x = p.normals(tokens * n), dy = p.normals(tokens * m);
    const y0 = p.normals(tokens * m), dx0 = p.normals(tokens * n), dc0 = p.normals(10), w0 = p.normals(m * n);
    const want = spectralReference(positions, coef, m, n, transform, alpha, x, dy, tokens);
    const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha });
    const c = upload(gpu, coef), y = upload(gpu, y0), dx = upload(gpu, dx0), dc = upload(gpu, dc0);
    const w = upload(gpu, w0);
    op.backward(op.forward(upload(gpu, x), c, y, tokens)!, upload(gpu, dy), c, dx, dc);
    op.materialize(c, w, { accumulate: true });
    const diff = (got: Float32Array, base: Float32Array) => Float64Array.from(got, (v, i) => v - base[i]);
    assertClose(diff(await readF32(gpu, y, tokens * m), y0), want.y, TOL, `y ${transform}`);
    assertClose(diff(await readF32(gpu, dx, tokens * n), dx0), want.dx, TOL, `dx ${transform}`);
    assertClose(diff(await readF32(gpu, dc, 10), dc0), want.dc, TOL, `dc ${transform}`);
    assertClose(diff(await readF32(gpu, w, m * n), w0), want.dw, TOL, `W + ΔW ${transform}`);
    op.dispose();
  }
});

Deno.test("materialize adds ΔW or ΔWᵀ at an offset; a layer 65536 or more wide takes the dense route", async () => {
  const gpu = await getGpu();
  for (const [m, n] of [[9, 14], [2, 65537]]) {
    for (const transform of TRANSFORMS) {
      const p = new Prng(m + n);
      const positions = testPositions(m, n, 6, 3);
      const coef = p.normals(6);
      const dw = deltaWReference(positions, coef, m, n, transform, 40);
      const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha: 40 });
      const c = upload(gpu, coef);
      for (const transposed of [false, true]) {
        const at = 5, base = p.normals(at + m * n + 3);
        const w = upload(gpu, base);
        op.materialize(c, w, { accumulate: true, transposed, at });
        const got = await readF32(gpu, w, base.length);
        const want = Float64Array.from(base);
        const delta = transposed ? transpose(dw, m, n) : dw;
        delta.forEach((v, i) => want[at + i] += v);
        assertClose(got, want, TOL, `${transform} ${m}×${n}${transposed ? " transposed" : ""} at ${at}`);
        gpu.pool.release(w);
      }
      gpu.pool.release(c);
      op.dispose();
    }
  }
});

Deno.test("coefGradient matches the reference on awkward shapes, wide layers and many entries", async () => {
  const gpu = await getGpu();
  const cases = [[7, 12, 12], [20, 43, 12], [1, 5, 5], [2, 4100, 5], [50, 60, 700]] as const;
  for (const [m, n, count] of cases) {
    for (const transform of TRANSFORMS) {
      for (const tokens of [1, 37]) {
        const p = new Prng(m * n + tokens);
        const positions = testPositions(m, n, count, 3);
        const coef = p.normals(count), x = p.normals(tokens * n), dy = p.normals(tokens * m);
        const want = spectralReference(positions, coef, m, n, transform, 9, x, dy, tokens);
        const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha: 9 });
        const dc = gpu.pool.acquire(count * 4);
        op.coefGradient(upload(gpu, x), upload(gpu, dy), tokens, dc, { accumulate: false });
        assertClose(await readF32(gpu, dc, count), want.dc, TOL, `dc ${transform} ${m}×${n} T=${tokens}`);
        gpu.pool.release(dc);
        op.dispose();
      }
    }
  }
});

Deno.test("coefficient and input gradients agree with finite differences of the float64 layer", async () => {
  const gpu = await getGpu();
  const m = 11, n = 8, tokens = 3, alpha = 30, h = 1e-4;
  for (const transform of TRANSFORMS) {
    const p = new Prng(5);
    const positions = testPositions(m, n, 9, 8);
    const coef = p.normals(9), x = p.normals(tokens * n), r = p.normals(tokens * m);
    // L(c, x) = Σ r ⊙ (x ΔW(c)ᵀ), so ∂L/∂y = r.
    const loss = (c: ArrayLike<number>, xs: ArrayLike<number>) => {
      const y = matmulT(xs, deltaWReference(positions, c, m, n, transform, alpha), tokens, n, m);
      return y.reduce((s, v, i) => s + v * r[i], 0);
    };
    const fdCoef = Array.from(coef, (_, k) => {
      const plus = Float64Array.from(coef), minus = Float64Array.from(coef);
      plus[k] += h;
      minus[k] -= h;
      return (loss(plus, x) - loss(minus, x)) / (2 * h);
    });
    const fdX = Array.from(x, (_, i) => {
      const plus = Float64Array.from(x), minus = Float64Array.from(x);
      plus[i] += h;
      minus[i] -= h;
      return (loss(coef, plus) - loss(coef, minus)) / (2 * h);
    });
    const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha });
    const c = upload(gpu, coef), y = gpu.pool.acquire(tokens * m * 4);
    const dx = gpu.pool.acquire(tokens * n * 4), dc = gpu.pool.acquire(9 * 4);
    const saved = op.forward(upload(gpu, x), c, y, tokens, { accumulate: false })!;
    op.backward(saved, upload(gpu, r), c, dx, dc, { accumulateDx: false, accumulateGrad: false });
    assertClose(await readF32(gpu, dc, 9), fdCoef, TOL, `∂L/∂c ${transform}`);
    assertClose(await readF32(gpu, dx, tokens * n), fdX, TOL, `∂L/∂x ${transform}`);
    op.dispose();
  }
});

Deno.test("materialize equals the PyTorch fixture ΔW of every llama and gpt2 target", async () => {
  const gpu = await getGpu();
  for (const family of ["llama", "gpt2"]) {
    const dir = new URL(`./fixtures/models/${family}/`, import.meta.url);
    const ref = await openSafetensors(new URL("reference.safetensors", dir).pathname);
    const { targets, alpha } = JSON.parse(await Deno.readTextFile(new URL("reference.json", dir)));
    for (const target of targets as string[]) {
      const positions = await ref.read(`ssh.${target}.indices`) as Int32Array;
      const c = upload(gpu, await ref.readF32(`ssh.${target}.coef`));
      for (const transform of TRANSFORMS) {
        const name = `${transform}.${target}.delta_w`;
        if (!ref.has(name)) continue;
        const [m, n] = ref.info(name).shape;
        const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha });
        const dw = gpu.pool.acquire(m * n * 4);
        op.materialize(c, dw);
        assertClose(await readF32(gpu, dw, m * n), await ref.readF32(name), TOL, `${family} ${name}`);
        gpu.pool.release(dw);
        op.dispose();
      }
      gpu.pool.release(c);
    }
  }
});

Deno.test("bad inputs raise errors that say what was expected", async () => {
  const gpu = await getGpu();
  const m = 4, n = 6;
  const positions = new Int32Array([0, 1, 2, 3]);
  assertThrows(
    () => new SpectralAdapterOp(gpu, { m, nIn: n, positions: new Int32Array([0, 1, 0, 1]), alpha: 1 }),
    "twice",
  );
  assertThrows(
    () => new SpectralAdapterOp(gpu, { m, nIn: n, positions: new Int32Array([4, 1]), alpha: 1 }),
    "outside",
  );
  assertThrows(
    () => new SpectralAdapterOp(gpu, { m, nIn: n, positions: new Int32Array([1]), alpha: 1 }),
    "pairs",
  );
  assertThrows(() => new SpectralAdapterOp(gpu, { m, nIn: n, positions, alpha: NaN }), "alpha");
  assertThrows(
    () => new SpectralAdapterOp(gpu, { m, nIn: n, positions, alpha: 1, transform: "fft" as Transform }),
    "unknown transform",
  );
  const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, alpha: 1 });
  const big = gpu.pool.acquire(4096), small = gpu.pool.acquire(16);
  assertThrows(() => op.forward(small, big, big, 3), "x (tokens×in_features = 3×6)");
  assertThrows(() => op.forward(big, big, small, 3), "y (tokens×out_features");
  assertThrows(() => op.forward(big, big, big, 0), "tokens");
  assertThrows(() => op.forward(big, big, big, 1.5), "tokens");
  const tiny = gpu.device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE });
  assertThrows(() => op.forward(big, tiny, big, 1), "coef (n = 2)");
  const saved = op.forward(big, big, big, 3)!;
  assertThrows(() => op.backward(saved, small, big, null, big), "dy");
  assertThrows(() => op.backward(saved, big, big, small, big), "dx");
  assertThrows(() => op.backward(saved, big, big, null, tiny), "dcoef");
  const other = new SpectralAdapterOp(gpu, { m, nIn: n, positions, alpha: 1 });
  assertThrows(() => other.backward(saved, big, big, null, big), "another adapter op");
  other.dispose();
  op.backward(saved, big, big, null, big);
  assertThrows(() => op.backward(saved, big, big, null, big), "already released");
  assertEquals(op.forward(big, big, big, 3, { save: false }), null);
  assertThrows(() => op.materialize(big, small), "dst (M×N = 4×6)");
  assertThrows(() => op.materialize(big, big, { at: 4 }), "an offset `at` needs `accumulate`");
  assertThrows(() => op.denseGradient(small, big), "g (M×N");
  await gpu.sync();
  op.dispose();
  assertThrows(() => op.forward(big, big, big, 1), "after dispose");
});

/** Encode one training step of the op (forward, backward) on fixed buffers. */
function step(gpu: Gpu, op: SpectralAdapterOp, bufs: Record<string, GPUBuffer>, tokens: number): void {
  const saved = op.forward(bufs.x, bufs.c, bufs.y, tokens)!;
  op.backward(saved, bufs.dy, bufs.c, bufs.dx, bufs.dc);
  gpu.stream.flush();
}

Deno.test("repeated steps reuse pooled scratch and bind groups", async () => {
  const gpu = await getGpu();
  const m = 24, n = 40, tokens = 16;
  const positions = testPositions(m, n, 15, 1);
  const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform: "dht2d", alpha: 10 });
  const p = new Prng(2);
  const bufs = {
    x: upload(gpu, p.normals(tokens * n)),
    dy: upload(gpu, p.normals(tokens * m)),
    c: upload(gpu, p.normals(15)),
    y: gpu.pool.acquire(tokens * m * 4),
    dx: gpu.pool.acquire(tokens * n * 4),
    dc: gpu.pool.acquire(15 * 4),
  };
  for (let i = 0; i < 3; i++) {
    step(gpu, op, bufs, tokens);
    await gpu.sync();
  }
  const allocated = gpu.pool.stats().allocated, groups = gpu.stream.bindGroupsCreated;
  for (let i = 0; i < 3; i++) {
    step(gpu, op, bufs, tokens);
    await gpu.sync();
  }
  assertEquals(gpu.pool.stats().allocated, allocated, "no new buffers");
  assert(gpu.stream.bindGroupsCreated === groups, `bind groups ${groups} → ${gpu.stream.bindGroupsCreated}`);
  op.dispose();
});

Deno.test("coefGradient of a square layer in one fused kernel matches the reference and the separate route", async () => {
  const gpu = await getGpu();
  const cases = [[1, 1], [2, 3], [7, 9], [12, 12], [43, 40], [96, 700], [67, 20]] as const;
  const saved = { ...COEF_GRAD_HEURISTICS };
  try {
    for (const [n, count] of cases) {
      for (const transform of TRANSFORMS) {
        for (const tokens of [1, 2, 37]) {
          const p = new Prng(n * 131 + tokens + count);
          const positions = testPositions(n, n, count, 5);
          const x = p.normals(tokens * n), dy = p.normals(tokens * n), dc0 = p.normals(count);
          const want = spectralReference(positions, p.normals(count), n, n, transform, 9, x, dy, tokens);
          const op = new SpectralAdapterOp(gpu, { m: n, nIn: n, positions, transform, alpha: 9 });
          // one trip of many pairs per workgroup, several trips of one or a few pairs each
          for (const [chunks, elements] of [[512, 2048], [2, 1], [1, 64]]) {
            Object.assign(COEF_GRAD_HEURISTICS, { fused: true, chunks, elements });
            const what = `${transform} ${n}×${n} T=${tokens} chunks=${chunks} elements=${elements}`;
            // 67 has a prime factor only Bluestein's FFT takes: the separate route
            assertEquals(op.fusesGradient, n !== 67, what);
            // δ as columns 3.. of a wider gradient (rows n + 5 apart), added to dc0
            const ld = n + 5, wide = new Float32Array(3 + tokens * ld);
            for (let t = 0; t < tokens; t++) wide.set(dy.subarray(t * n, (t + 1) * n), 3 + t * ld);
            const dc = upload(gpu, dc0);
            op.coefGradient(upload(gpu, x), upload(gpu, wide), tokens, dc, { dyRows: { ld, offset: 3 } });
            const sum = Float64Array.from(want.dc, (v, k) => v + dc0[k]);
            assertClose(await readF32(gpu, dc, count), sum, TOL, `dc ${what}`);
            COEF_GRAD_HEURISTICS.fused = false;
            op.coefGradient(upload(gpu, x), upload(gpu, dy), tokens, dc, { accumulate: false });
            COEF_GRAD_HEURISTICS.fused = true;
            assertClose(await readF32(gpu, dc, count), want.dc, TOL, `separate dc ${what}`);
            gpu.pool.release(dc);
          }
          op.dispose();
        }
      }
    }
  } finally {
    Object.assign(COEF_GRAD_HEURISTICS, saved);
  }
});

Deno.test("materialize builds ΔW in one kernel where M's transform fits a workgroup, else in three passes", async () => {
  const gpu = await getGpu();
  const saved = { ...DELTA_WEIGHT_HEURISTICS };
  try {
    // M = 67 needs Bluestein, and four lines of 4096 do not fit workgroup memory: three passes
    // (ΔWᵀ at M = 4096 takes one line a workgroup)
    for (const [m, n] of [[1, 1], [2, 9], [5, 67], [96, 33], [300, 7], [67, 5], [4096, 3]] as const) {
      for (const transform of TRANSFORMS) {
        const p = new Prng(m * 17 + n);
        const count = Math.min(9, m * n);
        const positions = testPositions(m, n, count, 2);
        const coef = p.normals(count);
        const dw = deltaWReference(positions, coef, m, n, transform, 40);
        const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha: 40 });
        const c = upload(gpu, coef);
        Object.assign(DELTA_WEIGHT_HEURISTICS, saved);
        const routed = (transposed: boolean) => {
          const dst = gpu.pool.acquire(m * n * 4);
          const placed = { transposed, accumulate: false, at: 0 };
          const one = encodeDeltaWeight(gpu, op.spectrum, c, dst, 1, placed);
          gpu.pool.release(dst);
          return one;
        };
        const oneKernel = m !== 67 && m !== 4096;
        assertEquals(
          [routed(false), routed(true)],
          [oneKernel, m !== 67],
          `${m}×${n}: one kernel for ΔW, ΔWᵀ`,
        );
        // lines of as many pairs as fit, and of as few as allowed; then the three passes
        for (const [fused, elements] of [[true, 2048], [true, 1], [false, 2048]] as const) {
          Object.assign(DELTA_WEIGHT_HEURISTICS, { fused, elements });
          for (const transposed of [false, true]) {
            for (const accumulate of [false, true]) {
              const at = accumulate ? 3 : 0, base = p.normals(at + m * n + 2);
              const w = upload(gpu, base);
              op.materialize(c, w, { accumulate, transposed, at });
              const want = Float64Array.from(base);
              (transposed ? transpose(dw, m, n) : dw).forEach((v, i) =>
                want[at + i] = (accumulate ? want[at + i] : 0) + v
              );
              const what =
                `${transform} ${m}×${n} fused=${fused} elements=${elements} transposed=${transposed}`;
              assertClose(await readF32(gpu, w, base.length), want, TOL, `${what} accumulate=${accumulate}`);
              gpu.pool.release(w);
            }
          }
        }
        gpu.pool.release(c);
        op.dispose();
      }
    }
  } finally {
    Object.assign(DELTA_WEIGHT_HEURISTICS, saved);
  }
});

Deno.test("materialize writes W + ΔW from a base weight, in one kernel and in three passes", async () => {
  const gpu = await getGpu();
  const saved = { ...DELTA_WEIGHT_HEURISTICS };
  try {
    for (const [m, n] of [[12, 7], [67, 5]] as const) {
      for (const transform of TRANSFORMS) {
        const p = new Prng(m + n);
        const positions = testPositions(m, n, 6, 9);
        const coef = p.normals(6);
        const dw = deltaWReference(positions, coef, m, n, transform, 25);
        const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha: 25 });
        const c = upload(gpu, coef);
        for (const fused of [true, false]) {
          DELTA_WEIGHT_HEURISTICS.fused = fused;
          for (const transposed of [false, true]) {
            const w = p.normals(m * n), at = 4, before = p.normals(at + m * n + 3);
            const base = upload(gpu, w), dst = upload(gpu, before);
            op.materialize(c, dst, { base, transposed, at });
            const want = Float64Array.from(before);
            (transposed ? transpose(dw, m, n) : dw).forEach((v, i) => want[at + i] = w[i] + v);
            const what = `${transform} ${m}×${n} fused=${fused} transposed=${transposed}`;
            assertClose(await readF32(gpu, dst, before.length), want, TOL, what);
            for (const b of [base, dst]) gpu.pool.release(b);
          }
        }
        assertThrows(() => op.materialize(c, c, { base: c, accumulate: true }), "exclude each other");
        assertThrows(() => op.materialize(c, c, { base: c }), "another buffer than dst");
        gpu.pool.release(c);
        op.dispose();
      }
    }
  } finally {
    Object.assign(DELTA_WEIGHT_HEURISTICS, saved);
  }
});
