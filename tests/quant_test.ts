import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { getGpu, readF32, upload } from "../lib/gpu/mod.ts";
import { encodeMatmul } from "../lib/linalg/matmul.ts";
import { type MatmulTileName, planMatmul } from "../lib/linalg/matmul_plan.ts";
import { matmulReference } from "../lib/linalg/reference.ts";
import { cast, embedding, linear, quantize, type QuantKind, Tensor } from "../lib/tensor/mod.ts";
import { copyAll } from "../lib/tensor/ops/copy.ts";
import { dequantizeReference, quantizeReference } from "../lib/tensor/reference/quant.ts";
import { packCodes, QUANT_CODES, QUANT_GROUP, unpackCodes } from "../lib/tensor/quant_format.ts";
import { Rng } from "./tensor_helpers.ts";

const KINDS: QuantKind[] = ["q8", "q4"];
const rng = new Rng(20261127);

/** Normal values rounded to f32, with one group scaled up 1000× and one all zero (when long enough). */
function weights(n: number): Float32Array {
  const x = Float32Array.from(rng.normals(n, 0.05));
  if (n >= 3 * QUANT_GROUP) {
    for (let i = QUANT_GROUP; i < 2 * QUANT_GROUP; i++) x[i] *= 1000;
    x.fill(0, 2 * QUANT_GROUP, 3 * QUANT_GROUP);
  }
  return x;
}

Deno.test("quant: the reference packs and unpacks codes, and bounds the error by half a step", () => {
  for (const kind of KINDS) {
    const x = weights(257);
    const q = quantizeReference(x, kind);
    assertEquals(
      Array.from(unpackCodes(packCodes(q.codes, kind), x.length, kind)),
      Array.from(q.codes),
      kind,
    );
    const back = dequantizeReference(q);
    x.forEach((v, i) => {
      const d = q.scales[Math.floor(i / QUANT_GROUP)];
      const { low, high } = QUANT_CODES[kind];
      assert(
        // half a step, or a whole one where q4's codes stop at 7 (a value of −m's size)
        Math.abs(v - back[i]) <= Math.abs(d) * (q.codes[i] === high ? 1 : 0.5) + 1e-12,
        `${kind} value ${i}: ${v} → ${back[i]} (step ${d})`,
      );
      assert(q.codes[i] >= low && q.codes[i] <= high, `${kind} code ${i} out of range`);
    });
    // each group's value of largest magnitude is stored exactly, at the top code
    for (let g = 0; g < q.scales.length; g++) {
      const group = Array.from(x.subarray(g * QUANT_GROUP, (g + 1) * QUANT_GROUP));
      const at = group.reduce((best, v, i) => (Math.abs(v) > Math.abs(group[best]) ? i : best), 0);
      assertEquals(
        q.codes[g * QUANT_GROUP + at],
        group[at] === 0 ? 0 : QUANT_CODES[kind].top,
        `${kind} group ${g}`,
      );
    }
  }
});

Deno.test("quant: the GPU quantizes as the float64 reference, at awkward sizes", async () => {
  const gpu = await getGpu();
  for (const kind of KINDS) {
    for (const n of [1, 31, 32, 97, 1000, 4099]) {
      const x = weights(n);
      const t = Tensor.from(gpu, x, [n], { dtype: kind });
      assertEquals(t.dtype, kind);
      const words = new Uint32Array(
        await gpu.stream.read(t.buffer, packCodes(new Int8Array(n), kind).byteLength),
      );
      const scales = await readF32(gpu, t.scales, Math.ceil(n / QUANT_GROUP));
      const ref = quantizeReference(x, kind);
      assertClose(scales, ref.scales, 1e-6, `${kind} n=${n} scales`);
      const codes = unpackCodes(words, n, kind);
      for (let i = 0; i < n; i++) {
        if (codes[i] === ref.codes[i]) continue;
        // only a value within rounding of a half step may land on the other code
        const d = ref.scales[Math.floor(i / QUANT_GROUP)];
        const frac = Math.abs(x[i] / d) % 1;
        assert(
          Math.abs(codes[i] - ref.codes[i]) === 1 && Math.abs(frac - 0.5) < 1e-4,
          `${kind} n=${n} code ${i}: GPU ${codes[i]}, reference ${ref.codes[i]} (x/d = ${x[i] / d})`,
        );
      }
      // what the tensor reads back is what its codes and scales stand for
      const values = await t.toArray();
      const stood = dequantizeReference({ codes, scales: Float64Array.from(scales) });
      assertEquals(Array.from(values), Array.from(Float32Array.from(stood)), `${kind} n=${n} toArray`);
      t.dispose();
    }
  }
});

Deno.test("quant: dequantizing on the GPU (cast, copyAll at an offset) gives the stored values", async () => {
  const gpu = await getGpu();
  for (const kind of KINDS) {
    const x = weights(203);
    const t = Tensor.from(gpu, x, [7, 29], { dtype: kind });
    const expected = await t.toArray();
    const f = cast(t, "f32");
    assertEquals(Array.from(await f.toArray()), Array.from(expected), `${kind} cast`);
    const dst = Tensor.zeros(gpu, [300]);
    copyAll(t, dst, 61);
    const got = await dst.toArray();
    assertEquals(Array.from(got.subarray(61, 61 + 203)), Array.from(expected), `${kind} copyAll`);
    assert(got.subarray(0, 61).every((v) => v === 0) && got.subarray(264).every((v) => v === 0), "outside");
    if (gpu.f16) {
      const h = cast(t, "f16");
      assertEquals(Array.from(await h.toArray()), Array.from(Float16Array.from(expected)), `${kind} as f16`);
      h.dispose();
    }
    for (const u of [t, f, dst]) u.dispose();
  }
});

Deno.test("quant: an embedding table stored quantized gives its rows' stored values, as float64 does", async () => {
  const gpu = await getGpu();
  for (const kind of KINDS) {
    for (const [vocab, d] of [[37, 96], [11, 40], [1, 32], [5, 7]]) {
      const x = weights(vocab * d);
      const table = Tensor.from(gpu, x, [vocab, d], { dtype: kind });
      const ids = Int32Array.from({ length: 13 }, (_, i) => (i * 7 + 3) % vocab);
      const rows = embedding(table, Tensor.from(gpu, ids, [13]));
      const want = dequantizeReference(quantizeReference(x, kind));
      const expected = Float64Array.from(
        { length: 13 * d },
        (_, i) => want[ids[Math.floor(i / d)] * d + (i % d)],
      );
      assertClose(await rows.toArray(), expected, 1e-6, `${kind} ${vocab}×${d} rows`);
      const stored = await table.toArray();
      const picked = Array.from({ length: 13 * d }, (_, i) => stored[ids[Math.floor(i / d)] * d + (i % d)]);
      assertEquals(
        Array.from(await rows.toArray()),
        picked,
        `${kind} ${vocab}×${d}: the stored values exactly`,
      );
      for (const t of [table, rows]) t.dispose();
    }
  }
});

Deno.test("quant: matmul with a quantized B equals the product with its dequantized values", async () => {
  const gpu = await getGpu();
  // (m, n, k, transB, tile): vec4 rows that are not whole groups, one row, a K split, every
  // preset shape class
  const cases: [number, number, number, boolean, MatmulTileName | undefined][] = [
    [37, 44, 28, true, undefined],
    [37, 44, 28, false, undefined],
    [1, 100, 36, true, undefined],
    [9, 12, 600, false, undefined],
    [9, 12, 600, true, undefined],
    [130, 72, 40, true, "medium"],
    [67, 68, 132, false, "big"],
    [67, 68, 132, true, "wide"],
    [5, 128, 96, true, "m8"],
    [129, 8, 64, false, "n8"],
  ];
  for (const kind of KINDS) {
    for (const [m, n, k, transB, tile] of cases) {
      const ah = weights(m * k), bh = weights(k * n);
      const bq = Tensor.from(gpu, bh, transB ? [n, k] : [k, n], { dtype: kind });
      const bValues = await bq.toArray();
      const a = upload(gpu, ah), c = gpu.pool.acquire(m * n * 4);
      const opts = { transB, tile, quantB: { kind, scales: bq.scales } };
      encodeMatmul(gpu, a, bq.buffer, c, m, n, k, opts);
      const { splits } = planMatmul(gpu, m, n, k, opts);
      const label = `${kind} ${m}×${n}×${k}${transB ? " NT" : " NN"} ${tile ?? "auto"} splits ${splits}`;
      assertClose(
        await readF32(gpu, c, m * n),
        matmulReference(ah, bValues, m, n, k, { transB }),
        2e-5,
        label,
      );
      gpu.pool.release(a);
      gpu.pool.release(c);
      bq.dispose();
    }
  }
});

Deno.test("quant: linear over a quantized weight, forward and the input gradient", async () => {
  const gpu = await getGpu();
  for (const kind of KINDS) {
    for (const layout of ["out_in", "in_out"] as const) {
      const [tokens, inF, outF] = [13, 64, 36];
      const x = weights(tokens * inF), w = weights(inF * outF), g = weights(tokens * outF);
      const wq = Tensor.from(gpu, w, layout === "out_in" ? [outF, inF] : [inF, outF], { dtype: kind });
      const wf = cast(wq, "f32");
      const run = async (weight: Tensor) => {
        const xt = Tensor.from(gpu, x, [tokens, inF], { requiresGrad: true });
        const y = linear(xt, weight, null, { weightLayout: layout });
        y.backward(Tensor.from(gpu, g, [tokens, outF]));
        return [await y.toArray(), await xt.grad!.toArray()];
      };
      const [yq, gq] = await run(wq), [yf, gf] = await run(wf);
      assertClose(yq, yf, 1e-6, `${kind} ${layout} forward`);
      assertClose(gq, gf, 1e-6, `${kind} ${layout} input gradient`);
      wq.dispose();
      wf.dispose();
    }
  }
});

Deno.test("quant: bad uses are refused with the reason", async () => {
  const gpu = await getGpu();
  const q = Tensor.from(gpu, weights(64), [8, 8], { dtype: "q8" });
  assertThrows(() => (q.requiresGrad = true), "only f32 tensors can require gradients");
  assertThrows(() => quantize(Tensor.from(gpu, [1, 2], [2], { dtype: "i32" }), "q4"), "expected f32");
  assertThrows(() => cast(q, "q4"), "use quantize()");
  const odd = Tensor.from(gpu, weights(18), [6, 3], { dtype: "q4" });
  const a = upload(gpu, weights(24)), c = gpu.pool.acquire(4 * 12);
  assertThrows(
    () => encodeMatmul(gpu, a, odd.buffer, c, 4, 3, 6, { quantB: { kind: "q4", scales: odd.scales } }),
    "its stored rows (3) and its placement must be multiples of 4",
  );
  assertThrows(
    () =>
      encodeMatmul(gpu, a, q.buffer, c, 4, 3, 6, { f16B: true, quantB: { kind: "q8", scales: q.scales } }),
    "either f16 or quantized",
  );
  q.dispose();
  odd.dispose();
  gpu.pool.release(a);
  gpu.pool.release(c);
});
