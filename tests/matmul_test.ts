import { assert, assertClose, assertEquals, assertThrows, relL2 } from "./assert.ts";
import { getGpu, Gpu, readF32, upload } from "../lib/gpu/mod.ts";
import { encodeMatmul } from "../lib/linalg/matmul.ts";
import {
  chooseTile,
  MATMUL_HEURISTICS,
  MATMUL_TILES,
  type MatmulOptions,
  type MatmulTileName,
  planMatmul,
  usesGemv,
} from "../lib/linalg/matmul_plan.ts";
import { Tensor } from "../lib/tensor/mod.ts";
import { matmulReference, matmulReferenceInto } from "../lib/linalg/reference.ts";
import { parseTileName, tileName, tileSharedBytes } from "../kernels/matmul.ts";
import { ACTIVATIONS } from "../lib/tensor/reference/activations.ts";

/** Seeded uniform [-1, 1) generator (mulberry32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

const rand = rng(20261126);
const randomF32 = (n: number) => Float32Array.from({ length: n }, rand);

/**
 * f32 tolerance for k-long dot products: rounding errors of a sum grow like √k·2⁻²⁴ at worst
 * for random signs, so 1e-5 holds up to k = 256 with a wide margin and is scaled by √(k/256) above.
 */
function tolerance(k: number): number {
  return 1e-5 * Math.max(1, Math.sqrt(k / 256));
}

/** Options of {@link check}: the matmul options with a flag for a random bias. */
type CheckOptions = Omit<MatmulOptions, "bias"> & { bias?: boolean };

/** Run one product on the GPU and compare it with the float64 reference. */
async function check(gpu: Gpu, m: number, n: number, k: number, opts: CheckOptions = {}): Promise<void> {
  const batch = opts.batch ?? 1;
  const ah = randomF32(batch * m * k);
  const bh = randomF32((opts.broadcastB ? 1 : batch) * k * n);
  const biasH = opts.bias ? randomF32(n) : undefined;
  const c0 = opts.accumulate ? randomF32(batch * m * n) : undefined;
  const a = upload(gpu, ah), b = upload(gpu, bh);
  const c = c0 ? upload(gpu, c0) : gpu.pool.acquire(batch * m * n * 4);
  const bias = biasH ? upload(gpu, biasH) : undefined;
  encodeMatmul(gpu, a, b, c, m, n, k, { ...opts, bias });
  const out = await readF32(gpu, c, batch * m * n);
  const ref = matmulReference(ah, bh, m, n, k, { ...opts, bias: biasH, accumulate: c0 });
  const { tile, splits } = planMatmul(gpu, m, n, k, { ...opts, bias });
  const label = `${m}×${n}×${k} ${JSON.stringify({ ...opts, tile })} splits ${splits}`;
  assertClose(out, ref, tolerance(k), label);
  for (const buf of [a, b, c, ...(bias ? [bias] : [])]) gpu.pool.release(buf);
}

const TRANSPOSES = [
  { transA: false, transB: false },
  { transA: false, transB: true },
  { transA: true, transB: false },
  { transA: true, transB: true },
];

Deno.test("matmul: awkward shapes, every transpose combination", async () => {
  const gpu = await getGpu();
  const sizes = [1, 3, 7, 17, 64, 65, 130];
  const pick = () => sizes[Math.floor((rand() + 1) / 2 * sizes.length)];
  for (let i = 0; i < 16; i++) await check(gpu, pick(), pick(), pick(), TRANSPOSES[i % 4]);
  for (const t of TRANSPOSES) {
    await check(gpu, 1, 1, 1, t);
    await check(gpu, 257, 129, 200, t);
  }
});

Deno.test("matmul: every preset tile, vec4 and scalar paths", async () => {
  const gpu = await getGpu();
  // Alternate the scalar and vec4 paths over the presets (each path is generated per operand,
  // not per tile) to keep the number of pipelines lavapipe compiles down; the GPU presets get both.
  for (const [i, tile] of (Object.keys(MATMUL_TILES) as MatmulTileName[]).entries()) {
    if (i % 2 === 0 || tile === "wide" || tile === "tall") {
      await check(gpu, 69, 67, 33, { tile, transB: true }); // nothing a multiple of 4
    }
    if (i % 2 === 1 || tile === "big") await check(gpu, 68, 72, 40, { tile, transA: true }); // all are
  }
  await check(gpu, 37, 41, 23, { tile: { bm: 16, bn: 16, bk: 4, tm: 2, tn: 1, buffers: 1, group: 2 } });
});

Deno.test("matmul: batched, broadcast B, bias, accumulate, alpha", async () => {
  const gpu = await getGpu();
  await check(gpu, 17, 20, 12, { batch: 3 });
  await check(gpu, 65, 36, 24, { batch: 2, broadcastB: true, transB: true });
  await check(gpu, 130, 68, 64, { bias: true, accumulate: true, alpha: -0.5 });
  await check(gpu, 7, 13, 5, { bias: true, accumulate: true, alpha: 3, transA: true, batch: 2 });
  await check(gpu, 3, 130, 17, { bias: true, transB: true });
});

Deno.test("matmul: split-K with every epilogue", async () => {
  const gpu = await getGpu();
  await check(gpu, 20, 36, 300, { splitK: 3, bias: true, accumulate: true, alpha: 0.25, batch: 2 });
  await check(gpu, 9, 13, 100, { splitK: 4, transA: true, transB: true });
  await check(gpu, 65, 64, 129, { splitK: 2, tile: "big", broadcastB: true, batch: 2, accumulate: true });
});

/**
 * One product over strided operands (buffers of `sizes` elements, C filled with random values
 * first) against the float64 reference, comparing the whole C buffer: elements outside C's
 * matrices must come back untouched.
 */
async function checkStrided(
  gpu: Gpu,
  m: number,
  n: number,
  k: number,
  sizes: { a: number; b: number; c: number },
  opts: CheckOptions,
): Promise<void> {
  const ah = randomF32(sizes.a), bh = randomF32(sizes.b), ch = randomF32(sizes.c);
  const bStored = opts.f16B ? Float16Array.from(bh) : bh;
  const a = upload(gpu, ah), b = upload(gpu, bStored), c = upload(gpu, ch);
  const biasH = opts.bias ? randomF32(n) : undefined;
  const bias = biasH ? upload(gpu, biasH) : undefined;
  encodeMatmul(gpu, a, b, c, m, n, k, { ...opts, bias });
  const out = await readF32(gpu, c, sizes.c);
  const ref = matmulReferenceInto(ah, bStored, Float64Array.from(ch), m, n, k, { ...opts, bias: biasH });
  assertClose(out, ref, tolerance(k), `${m}×${n}×${k} ${JSON.stringify(opts)}`);
  for (const buf of [a, b, c, ...(bias ? [bias] : [])]) gpu.pool.release(buf);
}

Deno.test("matmul: strided heads (attention in place), grouped B, offsets, every tile", async () => {
  const gpu = await getGpu();
  // [B, T, H, D] queries against [B, S, Hkv, D] keys: scores [B·H, T, S] packed
  for (const [bt, t, s, h, hkv, d] of [[2, 13, 11, 6, 2, 20], [1, 1, 5, 3, 3, 7], [3, 33, 40, 4, 1, 16]]) {
    const q = { ld: h * d, batchStride: t * h * d, headStride: d };
    const kv = { ld: hkv * d, batchStride: s * hkv * d, headStride: d, headGroup: h / hkv };
    const sizes = { a: bt * t * h * d, b: bt * s * hkv * d, c: bt * h * t * s };
    for (const tile of ["small", "medium", "cpu", "wide", "tall", "big", "m8", "n8"] as const) {
      await checkStrided(gpu, t, s, d, sizes, {
        batch: bt * h,
        heads: h,
        transB: true,
        alpha: 0.5,
        layoutA: q,
        layoutB: kv,
        tile,
      });
    }
    // probabilities [B·H, T, S] times values [B, S, Hkv, D] into [B, T, H, D] in place
    await checkStrided(gpu, t, d, s, { a: sizes.c, b: sizes.b, c: sizes.a }, {
      batch: bt * h,
      heads: h,
      layoutB: kv,
      layoutC: q,
    });
    // the key gradient of the last query head of each key head: dSᵀ·Q added into [B, S, Hkv, D]
    await checkStrided(gpu, s, d, t, { a: sizes.c, b: sizes.a, c: sizes.b }, {
      batch: bt * hkv,
      heads: hkv,
      transA: true,
      accumulate: true,
      layoutA: { offset: (h / hkv - 1) * t * s, batchStride: h * t * s, headStride: (h / hkv) * t * s },
      layoutB: { ...q, offset: (h / hkv - 1) * d, headStride: (h / hkv) * d },
      layoutC: { ld: hkv * d, batchStride: s * hkv * d, headStride: d },
    });
  }
  // q, k, v packed in one [B, T, 3·H·D] tensor (GPT-2's c_attn), with a bias and f16 B
  const [bt, t, h, d] = [2, 9, 2, 8];
  const packed = { ld: 3 * h * d, batchStride: t * 3 * h * d, headStride: d };
  for (const f16B of gpu.f16 ? [false, true] : [false]) {
    await checkStrided(gpu, t, t, d, { a: bt * t * 3 * h * d, b: bt * t * 3 * h * d, c: bt * h * t * t }, {
      batch: bt * h,
      heads: h,
      transB: true,
      bias: true,
      f16B,
      layoutA: packed,
      layoutB: { ...packed, offset: h * d },
    });
  }
  // an odd row stride and offset take the scalar paths
  await checkStrided(gpu, 5, 6, 7, { a: 3 * 5 * 9 + 3, b: 7 * 6, c: 3 * 5 * 11 + 1 }, {
    batch: 3,
    broadcastB: true,
    layoutA: { ld: 9, offset: 3, batchStride: 45 },
    layoutC: { ld: 11, offset: 1, batchStride: 55 },
  });
});

Deno.test("matmul: activation epilogues (forward keeps the pre-activation, backward multiplies by act′)", async () => {
  const gpu = await getGpu();
  const kinds = ["gelu", "gelu_tanh", "relu", "silu"] as const;
  // vec4 and scalar C, a K that would be split (never with an activation), f16 B
  const cases = [
    { m: 37, n: 44, k: 29, transB: true, tile: undefined, f16B: false },
    { m: 9, n: 13, k: 600, transB: false, tile: undefined, f16B: false },
    { m: 130, n: 72, k: 40, transB: true, tile: "medium", f16B: true },
  ] as const;
  for (const kind of kinds) {
    const { f, df } = ACTIVATIONS[kind];
    for (const c of cases) {
      if (c.f16B && !gpu.f16) continue;
      const { m, n, k } = c;
      const ah = randomF32(m * k), bh = randomF32(k * n), biasH = randomF32(n);
      const bStored = c.f16B ? Float16Array.from(bh) : bh;
      const a = upload(gpu, ah), b = upload(gpu, bStored), bias = upload(gpu, biasH);
      const out = gpu.pool.acquire(m * n * 4), pre = gpu.pool.acquire(m * n * 4);
      const common = { transB: c.transB, f16B: c.f16B, tile: c.tile };
      encodeMatmul(gpu, a, b, out, m, n, k, { ...common, bias, activation: { kind, pre } });
      const preRef = matmulReference(ah, bStored, m, n, k, { transB: c.transB, bias: biasH });
      const label = `${kind} ${m}×${n}×${k}${c.f16B ? " f16B" : ""}`;
      const tol = tolerance(k) * 4;
      assertClose(await readF32(gpu, pre, m * n), preRef, tolerance(k), `pre ${label}`);
      assertClose(await readF32(gpu, out, m * n), preRef.map(f), tol, `act ${label}`);
      // without a pre-activation buffer (inference) only C is written
      encodeMatmul(gpu, a, b, out, m, n, k, { ...common, bias, activation: { kind } });
      assertClose(await readF32(gpu, out, m * n), preRef.map(f), tol, `act, no pre ${label}`);
      // backward: (A·B)·act′(pre) against the pre-activation just computed
      const preGot = await readF32(gpu, pre, m * n);
      encodeMatmul(gpu, a, b, out, m, n, k, { ...common, activation: { kind, pre, backward: true } });
      const prod = matmulReference(ah, bStored, m, n, k, { transB: c.transB });
      assertClose(
        await readF32(gpu, out, m * n),
        prod.map((v, i) => v * df(preGot[i])),
        tol,
        `back ${label}`,
      );
      for (const buf of [a, b, bias, out, pre]) gpu.pool.release(buf);
    }
  }
  const buf = gpu.pool.acquire(4 * 64);
  const run = (opts: MatmulOptions) => () => encodeMatmul(gpu, buf, buf, gpu.pool.acquire(64), 4, 4, 4, opts);
  assertThrows(run({ activation: { kind: "gelu", pre: buf }, accumulate: true }), "no accumulate");
  assertThrows(run({ activation: { kind: "gelu", backward: true } }), "needs `pre`");
  gpu.pool.release(buf);
});

Deno.test("matmul: strided layouts are checked against the buffers", async () => {
  const gpu = await getGpu();
  const a = gpu.pool.acquire(4 * 100), b = gpu.pool.acquire(4 * 100), c = gpu.pool.acquire(4 * 100);
  const run = (opts: MatmulOptions) => () => encodeMatmul(gpu, a, b, c, 4, 4, 4, opts);
  assertThrows(run({ layoutA: { ld: 3 } }), "A's ld (3) is below its stored row length 4");
  assertThrows(run({ layoutB: { offset: 400 } }), "B (1 × 4×4 f32) needs 1664 bytes");
  assertThrows(run({ batch: 4, heads: 3 }), "batch (4) must be a multiple of heads (3)");
  assertThrows(run({ batch: 2, heads: 2, layoutC: { headGroup: 2 } }), "headGroup must be 1");
  assertThrows(run({ layoutC: { ld: 8 }, splitK: 2 }), "cannot be split along K");
  assertThrows(run({ layoutA: { headStride: -1 } }), "A's headStride must be an integer ≥ 0");
  for (const buf of [a, b, c]) gpu.pool.release(buf);
});

Deno.test("matmul: f16 B (frozen weights) computed in f32, loaded as vec4<f16>, as u32 pairs or by layout", async () => {
  const gpu = await getGpu();
  if (!gpu.f16) return;
  const shapes = [[69, 67, 33, true], [68, 72, 40, true], [5, 130, 17, false], [37, 128, 17, false]] as const;
  try {
    for (const loads of ["native", "packed", "auto"] as const) {
      MATMUL_HEURISTICS.f16Loads = loads;
      for (const [m, n, k, transB] of shapes) {
        const ah = randomF32(m * k), bh = randomF32(k * n);
        const bHalf = Float16Array.from(bh);
        const a = upload(gpu, ah), b = upload(gpu, bHalf), c = gpu.pool.acquire(m * n * 4);
        encodeMatmul(gpu, a, b, c, m, n, k, { transB, f16B: true });
        const out = await readF32(gpu, c, m * n);
        // Against B as stored (rounded to f16), the arithmetic is f32: the f32 tolerance holds.
        const what = `f16B ${m}×${n}×${k} ${loads}`;
        assertClose(out, matmulReference(ah, bHalf, m, n, k, { transB }), tolerance(k), what);
        // Against the f32 B, each weight carries a relative rounding error ≤ 2⁻¹¹ (≈ 2⁻¹¹/√3 RMS):
        // rel-L2 ≈ 3e-4, so 1e-3 bounds it.
        const e = relL2(out, matmulReference(ah, bh, m, n, k, { transB }));
        assert(e < 1e-3 && e > 1e-6, `f16 rounding error ${e} not at the f16 level`);
        for (const buf of [a, b, c]) gpu.pool.release(buf);
      }
    }
  } finally {
    MATMUL_HEURISTICS.f16Loads = "auto";
  }
});

Deno.test("matmul: tile choice and split-K heuristics", async () => {
  const gpu = await getGpu();
  assertEquals(chooseTile(4096, 4096), "big");
  assertEquals(chooseTile(4096, 3072), "big"); // 768 tiles of 128×128
  assertEquals(chooseTile(4096, 4096, 1, 4), "cpu"); // a software adapter
  assertEquals(chooseTile(4096, 768), "tall"); // one wave of 256 tiles of 128×96 (192 of `big` do not fill it)
  assertEquals(chooseTile(4096, 2304), "tall"); // 3 full waves, where `big` needs a third that is 18% full
  assertEquals(chooseTile(2048, 4096), "big"); // 2 waves of `big`
  assertEquals(chooseTile(128, 128, 384), "wide"); // attention's scores: `tall` would waste a third of its tiles
  assertEquals(chooseTile(1024, 768), "medium");
  assertEquals(chooseTile(384, 64, 1, 4), "cpu"); // on a software adapter
  assertEquals(chooseTile(8, 4096), "m8");
  assertEquals(chooseTile(4096, 8), "n8");
  assertEquals(chooseTile(24, 3072), "m32");
  assertEquals(chooseTile(24, 24, 64), "small"); // attention over 24 tokens
  assertEquals(chooseTile(4096, 30), "n32");
  const h100 = {
    description: "NVIDIA H100",
    limits: { maxComputeWorkgroupStorageSize: 49152 },
  } as unknown as Gpu;
  const plan = planMatmul(h100, 768, 768, 4096);
  assert(
    plan.splits > 1 && plan.kChunk % plan.tile.bk === 0,
    `weight-gradient shape splits K: ${JSON.stringify(plan)}`,
  );
  assertEquals(planMatmul(h100, 4096, 4096, 4096).splits, 1);
  assertEquals(planMatmul(gpu, 33, 33, 5, { splitK: 1 }).splits, 1);
  const forced = planMatmul(gpu, 33, 33, 100, { splitK: 3, tile: "medium" }); // bk 16
  assertEquals([forced.splits, forced.kChunk], [3, 48]);
  for (const tile of Object.values(MATMUL_TILES)) assertEquals(parseTileName(tileName(tile)), tile);
  assertEquals(parseTileName("64x64x16_4x4_1g4"), {
    bm: 64,
    bn: 64,
    bk: 16,
    tm: 4,
    tn: 4,
    buffers: 1,
    group: 4,
  });
  assertEquals(parseTileName("64x64x16_3x4_1"), null);
});

Deno.test("matmul: bad input gives errors naming the operand and sizes", async () => {
  const gpu = await getGpu();
  const small = gpu.pool.acquire(64); // 16 f32
  const big = gpu.pool.acquire(4096);
  const c = gpu.pool.acquire(4096);
  assertThrows(() => encodeMatmul(gpu, small, big, c, 5, 4, 4), "A (1 × 5×4 f32) needs 80 bytes");
  assertThrows(
    () => encodeMatmul(gpu, small, big, c, 5, 4, 4, { transA: true }),
    "A (1 × 4×5 f32) needs 80 bytes",
  );
  assertThrows(() => encodeMatmul(gpu, big, small, c, 4, 5, 4), "B (1 × 4×5 f32) needs 80 bytes");
  assertThrows(
    () => encodeMatmul(gpu, big, small, c, 4, 5, 4, { transB: true, batch: 2 }),
    "B (2 × 5×4 f32) needs 160 bytes",
  );
  assertThrows(() => encodeMatmul(gpu, big, big, small, 3, 7, 2), "C (1 × 3×7 f32) needs 84 bytes");
  assertThrows(
    () => encodeMatmul(gpu, big, big, c, 3, 17, 2, { bias: small }),
    "bias (17 f32) needs 68 bytes",
  );
  assertThrows(() => encodeMatmul(gpu, big, big, small, 0, 2, 2), "m must be a positive integer, got 0");
  assertThrows(() => encodeMatmul(gpu, big, big, small, 2, -3, 2), "n must be a positive integer, got -3");
  assertThrows(() => encodeMatmul(gpu, big, big, small, 2, 2, 1.5), "k must be a positive integer, got 1.5");
  assertThrows(
    () => encodeMatmul(gpu, big, big, small, 2, 2, 2, { batch: 0 }),
    "batch must be a positive integer",
  );
  assertThrows(() => encodeMatmul(gpu, big, big, big, 2, 2, 2), "C must not share a buffer");
  const noF16 = Object.create(gpu, { f16: { value: false } }) as Gpu;
  assertThrows(
    () => encodeMatmul(noF16, big, big, small, 2, 2, 2, { f16B: true }),
    "f16B needs the 'shader-f16'",
  );
  assertThrows(
    () => encodeMatmul(gpu, big, big, c, 2, 2, 2, { tile: "toString" as MatmulTileName }),
    "unknown tile 'toString'",
  );
  assertThrows(
    () =>
      encodeMatmul(gpu, big, big, c, 2, 2, 2, {
        tile: { bm: 256, bn: 256, bk: 32, tm: 4, tn: 4, buffers: 2 },
      }),
    "invocations and",
  );
  assertThrows(
    () =>
      encodeMatmul(gpu, big, big, c, 2, 2, 2, { tile: { bm: 6, bn: 8, bk: 4, tm: 2, tn: 2, buffers: 2 } }),
    "must be multiples of 4",
  );
  assertThrows(
    () => encodeMatmul(gpu, big, big, c, 2, 2, 2, { splitK: 0 }),
    "splitK must be a positive integer",
  );
  for (const buf of [small, big, c]) gpu.pool.release(buf);
});

Deno.test("matmul: a few rows against a packed B run as a GEMV, for both layouts of B, every storage and epilogue", async () => {
  const gpu = await getGpu();
  const kinds = ["f32", ...(gpu.f16 ? ["f16"] : []), "q8", "q4"] as const;
  for (const transB of [true, false]) {
    for (const kind of kinds) {
      // a transposed B's codes are read a group (q4) or half of one (q8) at a time: its rows are
      // whole groups; a (k, n) B is read 4 columns at a time
      const whole = transB && (kind === "q8" || kind === "q4") ? 32 : 4;
      const shapes = transB
        ? [[1, 1, 8], [3, 9, 40], [8, 300, 1000], [5, 37, 4104]]
        : [[1, 4, 7], [3, 12, 40], [8, 300, 1001], [5, 36, 97]];
      for (const [m, n, k0] of shapes) {
        const k = transB ? Math.ceil(k0 / whole) * whole : k0;
        const ah = randomF32(m * k), bh = randomF32(n * k), biasH = randomF32(n), c0 = randomF32(m * n);
        const stored = transB ? [n, k] : [k, n];
        const quantized = kind === "q8" || kind === "q4"
          ? Tensor.from(gpu, bh, stored, { dtype: kind })
          : null;
        const bValues = quantized ? await quantized.toArray() : kind === "f16" ? Float16Array.from(bh) : bh;
        const b = quantized?.buffer ?? upload(gpu, kind === "f16" ? Float16Array.from(bh) : bh);
        const storage = quantized
          ? { quantB: { kind: quantized.dtype as "q8" | "q4", scales: quantized.scales } }
          : { f16B: kind === "f16" };
        const a = upload(gpu, ah), bias = upload(gpu, biasH);
        const label = `${kind} ${m}×${n}×${k} ${transB ? "NT" : "NN"}`;
        // a one-entry C has no other entries to average its rounding over
        const tol = tolerance(k) * (m * n === 1 ? 10 : 1);
        const o = { transB, ...storage };
        assert(usesGemv(m, n, k, o), `${label} runs as a GEMV`);
        // alpha and a bias; accumulating into C; a forward activation keeping the pre-activation
        const c = upload(gpu, c0), pre = gpu.pool.acquire(m * n * 4);
        encodeMatmul(gpu, a, b, c, m, n, k, { ...o, alpha: 0.5, bias });
        const ref = matmulReference(ah, bValues, m, n, k, { transB, alpha: 0.5, bias: biasH });
        assertClose(await readF32(gpu, c, m * n), ref, tol, `${label} alpha, bias`);
        gpu.stream.write(c, c0);
        encodeMatmul(gpu, a, b, c, m, n, k, { ...o, accumulate: true });
        const acc = matmulReference(ah, bValues, m, n, k, { transB, accumulate: c0 });
        assertClose(await readF32(gpu, c, m * n), acc, tol, `${label} accumulate`);
        encodeMatmul(gpu, a, b, c, m, n, k, { ...o, bias, activation: { kind: "silu", pre } });
        const preRef = matmulReference(ah, bValues, m, n, k, { transB, bias: biasH });
        assertClose(await readF32(gpu, pre, m * n), preRef, tol, `${label} pre-activation`);
        assertClose(await readF32(gpu, c, m * n), preRef.map(ACTIVATIONS.silu.f), tol * 4, `${label} silu`);
        for (const buf of [a, bias, c, pre, ...(quantized ? [] : [b])]) gpu.pool.release(buf);
        quantized?.dispose();
      }
    }
  }
  // more rows, rows of B the loads do not fit, a backward activation, or a tuning override take the tiles
  assert(!usesGemv(9, 4, 4, { transB: true }), "9 rows");
  assert(!usesGemv(2, 6, 4, {}), "a (k, n) B with n not a multiple of 4");
  assert(!usesGemv(2, 4, 6, { transB: true }), "k not a multiple of 4");
  assert(
    !usesGemv(2, 4, 48, { transB: true, quantB: { kind: "q4", scales: gpu.pool.acquire(4) } }),
    "q4 steps of 32",
  );
  assert(!usesGemv(2, 4, 4, { transB: true, tile: "m8" }), "a tile asked for");
});

Deno.test("matmul: on WebGPU's default limits every chosen tile fits, and batches past a dispatch's z run in pieces", async () => {
  const base = await getGpu();
  const device = await base.adapter.requestDevice({ requiredFeatures: base.f16 ? ["shader-f16"] : [] });
  // a GPU (not software: the GPU presets) that offers no more than WebGPU's defaults
  const plain = new Gpu(base.adapter, device, "an integrated GPU with the default limits");
  try {
    const bytes = plain.limits.maxComputeWorkgroupStorageSize;
    assertEquals(bytes, 16384);
    // shapes that choose each preset whose workgroup memory passes 16 KiB (medium, m32, n32, m8, n8, big)
    for (
      const [m, n, k] of [[64, 64, 40], [20, 200, 24], [200, 20, 24], [5, 130, 16], [130, 6, 16], [
        2048,
        2048,
        8,
      ]]
    ) {
      const preset = MATMUL_TILES[chooseTile(m, n)];
      for (const t of TRANSPOSES) {
        const { tile } = planMatmul(plain, m, n, k, t);
        assert(tileSharedBytes(tile, t.transA, t.transB) <= bytes, `${m}×${n}: ${tileName(tile)}`);
        assertEquals([tile.bm, tile.bn, tile.tm, tile.tn], [preset.bm, preset.bn, preset.tm, preset.tn]);
        await check(plain, m, n, k, t);
      }
      assert(tileSharedBytes(preset, false, true) > bytes, `${m}×${n}: the preset needs fitting`);
    }
    // a (k, n) B takes 4 KiB a row as a GEMV: 8 rows take a tile instead
    assert(usesGemv(4, 64, 32, {}, bytes) && !usesGemv(8, 64, 32, {}, bytes) && usesGemv(8, 64, 32, {}));
    await check(plain, 8, 64, 32);
    // a dispatch reaches 300 workgroups along z here: 700 matrices (100 of 7 heads) run in three pieces
    const few = new (class extends Gpu {
      override get limits(): GPUSupportedLimits {
        const real = super.limits;
        return new Proxy(real, {
          get: (t, key) => key === "maxComputeWorkgroupsPerDimension" ? 300 : Reflect.get(t, key),
        });
      }
    })(base.adapter, device, "the same GPU, 300 workgroups a dimension");
    await check(few, 3, 5, 4, { batch: 700, heads: 7, transB: true, bias: true });
    await check(few, 2, 3, 6, { batch: 650, broadcastB: true, transA: true, alpha: 2 });
  } finally {
    device.destroy();
  }
});
