// The spectral adapters (SSH, FourierFT) over one storage binding: the op's forward, backward and
// coefficient gradient in bands of tokens, the FHT in bands of rows, ΔW built in bands of its
// storage rows (one kernel or three passes), and merging or reading ΔW of a layer whose ΔW is over
// one binding. Each runs under a lowered limit against float64 and against the same call in one
// band: bit for bit where a band does the same arithmetic, else to float rounding.
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { randomLinear, runLayer } from "./peft_helpers.ts";
import { limited } from "./tensor_helpers.ts";
import { getGpu, readF32, upload } from "../lib/gpu/mod.ts";
import { f16ToF32, f32ToF16 } from "../lib/io/dtype.ts";
import { encodeMerge, readDeltaWeight } from "../lib/peft/merge.ts";
import { SpectralLayer } from "../lib/peft/spectral_layer.ts";
import { coefGradReference, deltaWReference, SpectralAdapterOp } from "../lib/spectral/adapter_op.ts";
import { COEF_GRAD_HEURISTICS } from "../lib/spectral/coef_grad.ts";
import { DELTA_WEIGHT_HEURISTICS } from "../lib/spectral/delta_weight.ts";
import { encodeFht } from "../lib/spectral/fht.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { dhtRowsRef } from "../lib/spectral/reference.ts";
import type { Transform } from "../lib/spectral/transforms.ts";
import { spectralReference, testPositions, transpose } from "./spectral_helpers.ts";

const TRANSFORMS: Transform[] = ["dht", "dht2d", "dft"];
/** The lowered storage-binding limit (bytes). */
const LIMIT = 16384;
const TOL = 1e-5;

/** Assert `a` holds `b`'s values bit for bit. */
function assertSame(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assertEquals(a.length, b.length, `${what}: length`);
  const i = Array.from(a).findIndex((v, k) => !Object.is(v, b[k]));
  assert(i < 0, `${what}: element ${i} is ${a[i]}, not ${b[i]}`);
}

/** `fn` with no lowered limit, then under `bytes`: both results. */
async function wholeAndBanded<R>(fn: () => Promise<R>, bytes = LIMIT): Promise<[R, R]> {
  const whole = await fn();
  return [whole, await limited(bytes, fn)];
}

Deno.test("the spectral op's forward and backward run in bands of tokens", async () => {
  const gpu = await getGpu();
  // 8×96 at 400 tokens: the review's case; primes, M ≠ N, and 97 (Bluestein) both ways
  const cases: [number, number, number][] = [[8, 96, 400], [37, 61, 401], [97, 53, 211], [53, 97, 97]];
  for (const [m, n, tokens] of cases) {
    for (const transform of TRANSFORMS) {
      const p = new Prng(m * 1000 + n + tokens);
      const positions = testPositions(m, n, 12, m + n);
      const count = positions.length / 2, alpha = 20;
      const coef = p.normals(count), x = p.normals(tokens * n), dy = p.normals(tokens * m);
      const y0 = p.normals(tokens * m), dx0 = p.normals(tokens * n), dc0 = p.normals(count);
      const want = spectralReference(positions, coef, m, n, transform, alpha, x, dy, tokens);
      const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha });
      const run = async (accumulate: boolean) => {
        const c = upload(gpu, coef), xb = upload(gpu, x), dyb = upload(gpu, dy);
        const y = upload(gpu, y0), dx = upload(gpu, dx0), dc = upload(gpu, dc0);
        const before = gpu.stream.dispatches;
        const saved = op.forward(xb, c, y, tokens, { accumulate })!;
        const forward = gpu.stream.dispatches - before;
        op.backward(saved, dyb, c, dx, dc, { accumulateDx: accumulate, accumulateGrad: accumulate });
        const out = {
          y: await readF32(gpu, y, tokens * m),
          dx: await readF32(gpu, dx, tokens * n),
          dc: await readF32(gpu, dc, count),
          forward,
        };
        for (const b of [c, xb, dyb, y, dx, dc]) gpu.pool.release(b);
        return out;
      };
      for (const accumulate of [false, true]) {
        const [whole, banded] = await wholeAndBanded(() => run(accumulate));
        const what = `${transform} ${m}×${n} T=${tokens}${accumulate ? " accumulated" : ""}`;
        assert(banded.forward >= 2 * whole.forward, `${what}: forward ran in one band`);
        const added = (v: ArrayLike<number>, base: Float32Array) =>
          Float64Array.from(v, (u, i) => u + (accumulate ? base[i] : 0));
        assertClose(banded.y, added(want.y, y0), TOL, `y ${what}`);
        assertClose(banded.dx, added(want.dx, dx0), TOL, `dx ${what}`);
        assertClose(banded.dc, added(want.dc, dc0), TOL, `dc ${what}`);
        // rows are independent, and each band pairs them as one band does
        assertSame(banded.y, whole.y, `y ${what}: not as in one band`);
        assertSame(banded.dx, whole.dx, `dx ${what}: not as in one band`);
        assertClose(banded.dc, whole.dc, 1e-6, `dc ${what}: not as in one band`);
      }
      op.dispose();
    }
  }
});

Deno.test("coefGradient (a folded layer's gradient) runs in bands of tokens: separate, fused, δ read in place", async () => {
  const gpu = await getGpu();
  const saved = { ...COEF_GRAD_HEURISTICS };
  try {
    // 48×48 takes the fused kernel when it is on; 37×61 the separate route
    for (const [m, n, fused] of [[48, 48, true], [48, 48, false], [37, 61, false]] as const) {
      for (const transform of TRANSFORMS) {
        COEF_GRAD_HEURISTICS.fused = fused;
        const tokens = 301, alpha = 9;
        const p = new Prng(m + n + tokens);
        const positions = testPositions(m, n, 20, 7);
        const count = positions.length / 2;
        const x = p.normals(tokens * n), dy = p.normals(tokens * m), dc0 = p.normals(count);
        const want = spectralReference(positions, p.normals(count), m, n, transform, alpha, x, dy, tokens);
        const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha });
        assertEquals(op.fusesGradient, fused, `${m}×${n} fused`);
        // δ as columns 3.. of a wider gradient (rows m + 5 apart), added to dc0
        const ld = m + 5, wide = new Float32Array(3 + tokens * ld);
        for (let t = 0; t < tokens; t++) wide.set(dy.subarray(t * m, (t + 1) * m), 3 + t * ld);
        const run = async () => {
          const xb = upload(gpu, x), dyb = upload(gpu, wide), dc = upload(gpu, dc0);
          op.coefGradient(xb, dyb, tokens, dc, { dyRows: { ld, offset: 3 } });
          const out = await readF32(gpu, dc, count);
          for (const b of [xb, dyb, dc]) gpu.pool.release(b);
          return out;
        };
        const [whole, banded] = await wholeAndBanded(run);
        const what = `${transform} ${m}×${n}${fused ? " fused" : ""}`;
        assertClose(banded, Float64Array.from(want.dc, (v, k) => v + dc0[k]), TOL, `dc ${what}`);
        assertClose(banded, whole, 1e-6, `dc ${what}: not as in one band`);
        op.dispose();
      }
    }
  } finally {
    Object.assign(COEF_GRAD_HEURISTICS, saved);
  }
});

Deno.test("an SSH or FourierFT layer of 8×96 at 400 tokens over a 64 KiB binding, spectral and folded", async () => {
  const gpu = await getGpu();
  const m = 8, n = 96, tokens = 400, alpha = 17;
  for (const [kind, transform] of [["ssh", "dht"], ["ssh", "dht2d"], ["fourierft", "dft"]] as const) {
    for (const layout of ["out_in", "in_out"] as const) {
      for (const route of ["fold", "spectral"] as const) {
        const p = new Prng(kind.length + transform.length + layout.length + route.length);
        const positions = testPositions(m, n, 10, 3);
        const coef = p.normals(positions.length / 2);
        const x = p.normals(tokens * n), r = p.normals(tokens * m);
        const run = async () => {
          const { lin } = randomLinear(gpu, new Prng(1), m, n, layout);
          // a trained bias keeps ΔW out of the weight
          lin.bias!.requiresGrad = route === "spectral";
          const layer = new SpectralLayer(gpu, kind, {
            outFeatures: m,
            inFeatures: n,
            positions,
            transform,
            alpha,
            coef,
          });
          lin.adapter = layer;
          assertEquals(layer.route(lin, tokens), route);
          const out = { ...await runLayer(gpu, lin, x, r, tokens), dc: await layer.coef.grad!.toArray() };
          for (const t of [layer, lin.weight, lin.bias!]) t.dispose();
          return out;
        };
        const [whole, banded] = await wholeAndBanded(run, 65536);
        const what = `${kind} ${transform} ${layout} ${route}`;
        const dw = deltaWReference(positions, coef, m, n, transform, alpha);
        const frozen = randomLinear(gpu, new Prng(1), m, n, layout);
        frozen.lin.weight.dispose();
        frozen.lin.bias!.dispose();
        const y = new Float64Array(tokens * m);
        for (let t = 0; t < tokens; t++) {
          for (let i = 0; i < m; i++) {
            let s = frozen.b[i];
            for (let j = 0; j < n; j++) s += x[t * n + j] * (frozen.w[i * n + j] + dw[i * n + j]);
            y[t * m + i] = s;
          }
        }
        assertClose(banded.y, y, TOL, `y ${what}`);
        assertClose(banded.y, whole.y, 1e-6, `y ${what}: not as in one band`);
        assertClose(banded.dx, whole.dx, 1e-6, `dx ${what}: not as in one band`);
        assertClose(banded.dc, whole.dc, 1e-6, `dc ${what}: not as in one band`);
        const g = new Float64Array(m * n);
        for (let t = 0; t < tokens; t++) {
          for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) g[i * n + j] += r[t * m + i] * x[t * n + j];
        }
        assertClose(banded.dc, coefGradReference(positions, g, m, n, transform, alpha), TOL, `dc ${what}`);
      }
    }
  }
});

/** ΔW (M×N, or ΔWᵀ) placed in `dst` as materialize's options say, in float64. */
function placed(
  dw: Float64Array,
  m: number,
  n: number,
  before: Float32Array,
  opts: { transposed: boolean; at: number; mode: "write" | "add" | "base" },
  base?: Float32Array,
): Float64Array {
  const want = Float64Array.from(before);
  const delta = opts.transposed ? transpose(dw, m, n) : dw;
  delta.forEach((v, i) => {
    const k = opts.at + i;
    want[k] = v + (opts.mode === "add" ? want[k] : opts.mode === "base" ? base![i] : 0);
  });
  return want;
}

Deno.test("materialize builds ΔW and ΔWᵀ over one binding in bands of rows: one kernel and three passes", async () => {
  const gpu = await getGpu();
  const saved = { ...DELTA_WEIGHT_HEURISTICS };
  try {
    // 64×300: the review's FourierFT layer; 97 needs Bluestein (three passes along it)
    for (const [m, n] of [[64, 300], [97, 53], [53, 97], [300, 61]] as const) {
      for (const transform of TRANSFORMS) {
        const p = new Prng(m * 7 + n);
        const positions = testPositions(m, n, 9, 2);
        const coef = p.normals(positions.length / 2), alpha = 40;
        const dw = deltaWReference(positions, coef, m, n, transform, alpha);
        const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha });
        const c = upload(gpu, coef);
        for (const fused of [true, false]) {
          for (const transposed of [false, true]) {
            for (const mode of ["write", "add", "base"] as const) {
              DELTA_WEIGHT_HEURISTICS.fused = fused;
              const at = mode === "write" ? 0 : mode === "add" ? 5 : 3;
              const before = p.normals(at + m * n + 2), w = p.normals(m * n);
              const run = async () => {
                const dst = upload(gpu, before), base = upload(gpu, w);
                op.materialize(c, dst, {
                  transposed,
                  at,
                  accumulate: mode === "add",
                  base: mode === "base" ? base : undefined,
                });
                const out = await readF32(gpu, dst, before.length);
                for (const b of [dst, base]) gpu.pool.release(b);
                return out;
              };
              const [whole, banded] = await wholeAndBanded(run);
              const what = `${transform} ${m}×${n} fused=${fused} transposed=${transposed} ${mode}`;
              assertClose(banded, placed(dw, m, n, before, { transposed, at, mode }, w), TOL, what);
              // ΔWᵀ's rows are made as in one band; ΔW's rows along the other axis
              if (transposed) assertSame(banded, whole, `${what}: not as in one band`);
              else assertClose(banded, whole, 1e-6, `${what}: not as in one band`);
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

Deno.test("materialize in bands of 65537 rows (a large vocabulary's LM head): the cas index does not overflow", async () => {
  const gpu = await getGpu();
  const saved = { ...DELTA_WEIGHT_HEURISTICS };
  try {
    // ΔW of [65537, 3] and ΔWᵀ of [3, 65537] are 786 KB, in bands of 300 kB (the cas table fits)
    for (const [m, n, transposed] of [[65537, 3, false], [3, 65537, true]] as const) {
      for (const transform of TRANSFORMS) {
        const p = new Prng(m + n);
        const positions = testPositions(m, n, 7, 5);
        const coef = p.normals(positions.length / 2);
        const dw = deltaWReference(positions, coef, m, n, transform, 30);
        const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform, alpha: 30 });
        const c = upload(gpu, coef);
        for (const fused of [true, false]) {
          DELTA_WEIGHT_HEURISTICS.fused = fused;
          const dst = gpu.pool.acquire(m * n * 4);
          await limited(300_000, () => Promise.resolve(op.materialize(c, dst, { transposed })));
          const what = `${transform} ${m}×${n} fused=${fused}`;
          assertClose(await readF32(gpu, dst, m * n), transposed ? transpose(dw, m, n) : dw, TOL, what);
          gpu.pool.release(dst);
        }
        gpu.pool.release(c);
        op.dispose();
      }
    }
  } finally {
    Object.assign(DELTA_WEIGHT_HEURISTICS, saved);
  }
});

Deno.test("merge, unmerge and readDeltaWeight of a layer whose ΔW is over one binding (f32, f16, Conv1D storage)", async () => {
  const gpu = await getGpu();
  for (const [kind, transform, m, n] of [["fourierft", "dft", 64, 300], ["ssh", "dht2d", 97, 53]] as const) {
    for (const layout of ["out_in", "in_out"] as const) {
      for (const f16 of [false, true]) {
        const p = new Prng(m + n + (f16 ? 1 : 0));
        const positions = testPositions(m, n, 11, 4);
        const coef = p.normals(positions.length / 2);
        const dw = deltaWReference(positions, coef, m, n, transform, 50);
        const transposed = layout === "in_out";
        const run = async () => {
          const { lin } = randomLinear(gpu, new Prng(3), m, n, layout, { f16 });
          const layer = new SpectralLayer(gpu, kind, {
            outFeatures: m,
            inFeatures: n,
            positions,
            transform,
            alpha: 50,
            coef,
          });
          const before = Float32Array.from(await lin.weight.toArray());
          const delta = await readDeltaWeight(gpu, layer, transposed);
          encodeMerge(lin, layer, 1);
          const merged = Float32Array.from(await lin.weight.toArray());
          encodeMerge(lin, layer, -1);
          const unmerged = Float32Array.from(await lin.weight.toArray());
          for (const t of [layer, lin.weight, lin.bias!]) t.dispose();
          return { before, delta, merged, unmerged };
        };
        const [whole, banded] = await wholeAndBanded(run);
        const what = `${kind} ${m}×${n} ${layout} ${f16 ? "f16" : "f32"}`;
        const want = transposed ? transpose(dw, m, n) : dw;
        assertClose(banded.delta, want, TOL, `ΔW ${what}`);
        assertClose(banded.delta, whole.delta, 1e-6, `ΔW ${what}: not as in one band`);
        // W + ΔW rounded once to the weight's dtype
        const sum = Float32Array.from(banded.before, (v, i) => v + banded.delta[i]);
        const rounded = f16 ? f16ToF32(f32ToF16(sum)) : sum;
        const off = rounded.filter((v, i) =>
          Math.abs(v - banded.merged[i]) > (f16 ? 1e-3 * Math.abs(v) + 1e-7 : 0)
        );
        assertEquals(off.length, 0, `merged ${what}: entries off`);
        assertClose(banded.unmerged, banded.before, f16 ? 1e-3 : 1e-6, `unmerged ${what}`);
      }
    }
  }
});

Deno.test("encodeFht runs in bands of rows: packed or strided, f32 or f16, shared, four-step and Bluestein", async () => {
  const gpu = await getGpu();
  // 96 and 97 in one workgroup (97 Bluestein), 16384 four-step and 8191 Bluestein over four-step
  const cases: [number, number, number][] = [
    [96, 301, LIMIT],
    [97, 150, LIMIT],
    [16384, 7, 150_000],
    [8191, 9, 160_000],
  ];
  for (const [n, rows, bytes] of cases) {
    for (const f16 of gpu.f16 ? [false, true] : [false]) {
      for (const strided of [false, true]) {
        const ld = strided ? n + 3 : n, offset = strided ? 5 : 0;
        const p = new Prng(n + rows);
        const x = Float32Array.from(p.normals(rows * n));
        const src = new Float32Array(offset + rows * ld);
        for (let r = 0; r < rows; r++) src.set(x.subarray(r * n, (r + 1) * n), offset + r * ld);
        const run = async () => {
          const a = upload(gpu, f16 ? f32ToF16(src) : src);
          const b = gpu.pool.acquire(rows * n * 4);
          encodeFht(gpu, a, b, rows, n, { f16, scale: 0.5, ...(strided ? { input: { ld, offset } } : {}) });
          const raw = await gpu.stream.read(b, Math.ceil((rows * n * (f16 ? 2 : 4)) / 4) * 4);
          gpu.pool.release(a);
          gpu.pool.release(b);
          return f16 ? f16ToF32(new Uint16Array(raw, 0, rows * n)) : new Float32Array(raw);
        };
        const [whole, banded] = await wholeAndBanded(run, bytes);
        const what = `n=${n} rows=${rows}${f16 ? " f16" : ""}${strided ? " strided" : ""}`;
        // the float64 transform of long rows is slow: of the last row there (in the last band)
        const xin = f16 ? f16ToF32(f32ToF16(x)) : x, from = n > 1000 ? rows - 1 : 0;
        const want = dhtRowsRef(xin.subarray(from * n), rows - from, n).map((v) => 0.5 * v);
        assertClose(banded.subarray(from * n), want, f16 ? 2e-3 : TOL, what);
        assertSame(banded, whole, `${what}: not as in one band`);
      }
    }
  }
});

Deno.test("a row over one binding is refused naming the layer", async () => {
  const gpu = await getGpu();
  const layer = new SpectralLayer(gpu, "ssh", {
    outFeatures: 8,
    inFeatures: 300,
    positions: new Int32Array([0, 1, 2, 3]),
    transform: "dht",
    alpha: 1,
    path: "h.0.mlp.c_fc",
  });
  const x = upload(gpu, new Float32Array(5 * 300)), y = gpu.pool.acquire(5 * 8 * 4);
  await limited(1024, () => {
    const e = assertThrows(() => layer.op.forward(x, layer.coef.buffer, y, 5), "h.0.mlp.c_fc");
    assert(e.message.includes("one row"), e.message);
    const dst = gpu.pool.acquire(8 * 300 * 4);
    assertThrows(() => layer.encodeDeltaWeight(dst), "h.0.mlp.c_fc");
    gpu.pool.release(dst);
    return Promise.resolve();
  });
  for (const b of [x, y]) gpu.pool.release(b);
  layer.dispose();
});
