// Ops over one storage binding that used to bind whole buffers: a sum's or mean's gradient (its
// output gradient broadcast back), Tensor.full, casts and dequantising, and an embedding lookup
// whose output (and so its gradient) is over the limit. Each runs under a lowered binding limit
// (the stream then refuses any binding over it) against float64 and the same call in one band.
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { broadcast, zeros } from "../lib/tensor/reference/array.ts";
import { embeddingBackward, embeddingForward } from "../lib/tensor/reference/embedding.ts";
import { dequantizeReference, quantizeReference } from "../lib/tensor/reference/quant.ts";
import * as T from "../lib/tensor/mod.ts";
import { MAX_RUN } from "../lib/tensor/ops/embedding.ts";
import { leaf, limited, randArr, Rng } from "./tensor_helpers.ts";

const LIMIT = 4096;

/** Assert `a` holds `b`'s values bit for bit (NaN as NaN). */
function assertSame(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assertEquals(a.length, b.length, `${what}: length`);
  const i = Array.from(a).findIndex((v, k) => !Object.is(v, b[k]));
  assert(i < 0, `${what}: element ${i} is ${a[i]}, not ${b[i]}`);
}

/** The values of `ts`, which are then freed. */
async function take(...ts: T.Tensor[]): Promise<Float32Array[]> {
  const out = [];
  for (const t of ts) out.push(await t.toArray());
  ts.forEach((t) => t.dispose());
  return out;
}

/** `fn` in one band and under {@link LIMIT}: both results. */
async function wholeAndBanded<R>(fn: () => Promise<R>): Promise<[R, R]> {
  const whole = await fn();
  return [whole, await limited(LIMIT, fn)];
}

Deno.test("sum and mean gradients over one binding: the output gradient broadcast back in bands", async () => {
  const gpu = await getGpu();
  const rng = new Rng(11);
  // rows of 7, 5 and 6 floats: bands start off minStorageBufferOffsetAlignment
  const cases: [number[], number[], "sum" | "mean", boolean][] = [
    [[1009, 7], [0], "sum", false], // a bias gradient's column sums
    [[3, 1001, 5], [0, 1], "mean", false],
    [[2003], [0], "mean", false], // all of it: a scalar's gradient
    [[997, 3, 2], [0, 2], "sum", true],
    [[499, 2, 5], [0, 2], "mean", true],
  ];
  for (const [shape, axes, op, keepDims] of cases) {
    const x = randArr(rng, shape);
    const kept = shape.map((d, i) => axes.includes(i) ? 1 : d);
    const g = randArr(rng, keepDims ? kept : kept.filter((_, i) => !axes.includes(i)));
    const count = axes.reduce((n, a) => n * shape[a], 1);
    const what = `${op} of [${shape}] over [${axes}]`;
    const [whole, banded] = await wholeAndBanded(async () => {
      const tx = leaf(gpu, x);
      T.tidy(() => T[op](tx, axes, keepDims).backward(leaf(gpu, g, false)));
      const out = await tx.grad!.toArray();
      tx.dispose();
      return out;
    });
    const scale = op === "mean" ? 1 / count : 1;
    const want = broadcast({ shape: kept, data: g.data }, zeros(shape), (u) => u * scale);
    assertClose(banded, want.data, 1e-6, what);
    assertSame(banded, whole, `${what}: not as in one band`);
  }
  // broadcastTo itself (sumTo's gradient): rows repeated, and rows read in bands of their own
  const broadcasts: [number[], number[]][] = [
    [[1, 7], [1013, 7]],
    [[1013, 1, 3], [1013, 2, 3]],
    [[5], [3, 401, 5]],
  ];
  for (const [from, to] of broadcasts) {
    const b = randArr(rng, from);
    const [whole, banded] = await wholeAndBanded(() => take(T.broadcastTo(leaf(gpu, b, false), to)));
    const what = `broadcastTo [${from}] → [${to}]`;
    assertSame(banded[0], Float32Array.from(broadcast(b, zeros(to), (u) => u).data), what);
    assertSame(banded[0], whole[0], `${what}: not as in one band`);
  }
});

Deno.test("Tensor.full over one binding fills every element in bands", async () => {
  const gpu = await getGpu();
  for (const [shape, value] of [[[1013, 7], 2.5], [[4099], -3], [[3, 347], NaN]] as const) {
    const got = await limited(LIMIT, () => T.tidy(() => T.Tensor.full(gpu, shape, value)).toArray());
    const n = shape.reduce((a, b) => a * b, 1);
    assertSame(got, new Float32Array(n).fill(value), `full [${shape}] with ${value}`);
  }
});

Deno.test("f32 ↔ f16 casts over one binding run in bands", async () => {
  const gpu = await getGpu();
  if (!gpu.f16) return;
  const shape = [1009, 7]; // 28 KB of f32, 14 KB of f16
  const x = Float32Array.from(randArr(new Rng(12), shape).data);
  const [whole, banded] = await wholeAndBanded(() =>
    take(...T.tidy(() => {
      const half = T.cast(T.Tensor.from(gpu, x, shape), "f16");
      return [half, T.cast(half, "f32")];
    }))
  );
  const want = Float32Array.from(Float16Array.from(x));
  assertSame(banded[0], want, "f32 → f16");
  assertSame(banded[1], want, "f16 → f32");
  banded.forEach((v, i) => assertSame(v, whole[i], `cast ${i}: not as in one band`));
});

/** `data` [a, b, c, d] with its middle two dimensions swapped: [a, c, b, d]. */
function swapMiddle(data: ArrayLike<number>, [a, b, c, d]: number[]): Float32Array {
  const out = new Float32Array(a * b * c * d);
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < b; j++) {
      for (let k = 0; k < c; k++) {
        for (let l = 0; l < d; l++) out[((i * c + k) * b + j) * d + l] = data[((i * b + j) * c + k) * d + l];
      }
    }
  }
  return out;
}

Deno.test("strided copies over one binding run in bands of their leading dimension, of any dtype", async () => {
  const gpu = await getGpu();
  const rng = new Rng(14);
  // transposes under a leading dimension (f32 and f16 element by element, i32 in 16-byte words),
  // rows that start off minStorageBufferOffsetAlignment
  const cases: [T.DType, number[]][] = [["f32", [97, 5, 3, 1]], ["f16", [131, 6, 5, 1]], ["i32", [
    61,
    3,
    5,
    4,
  ]]];
  for (const [dtype, shape] of cases) {
    if (dtype === "f16" && !gpu.f16) continue;
    const values = randArr(rng, shape).data.map((v) => dtype === "i32" ? Math.round(v * 1000) : v);
    const x = dtype === "f16" ? Float32Array.from(Float16Array.from(values)) : Float32Array.from(values);
    const [whole, banded] = await wholeAndBanded(() =>
      take(T.tidy(() => T.permute(T.Tensor.from(gpu, x, shape, { dtype }), [0, 2, 1, 3])))
    );
    const what = `permute ${dtype} [${shape}]`;
    assertSame(banded[0], swapMiddle(x, shape), what);
    assertSame(banded[0], whole[0], `${what}: not as in one band`);
  }
  // a transpose of the whole tensor reaches all of it from every index of its leading dimension
  const x = T.Tensor.from(gpu, new Float32Array(64 * 32), [64, 32]);
  await limited(LIMIT, () => Promise.resolve(assertThrows(() => T.permute(x, [1, 0]), "strided copy")));
  x.dispose();
});

Deno.test("dequantising over one binding runs in bands, into a tensor from any element", async () => {
  const gpu = await getGpu();
  const shape = [1009, 7]; // 7.3 KB of q8 codes, 3.6 KB of q4, 28 KB of values
  const x = Float32Array.from(randArr(new Rng(14), shape).data);
  for (const kind of ["q8", "q4"] as const) {
    const want = Float32Array.from(dequantizeReference(quantizeReference(x, kind)));
    // quantized in one band (quantizing in bands needs a wider limit: bands_tables_test.ts)
    const q = T.Tensor.from(gpu, x, shape, { dtype: kind });
    const [whole, banded] = await wholeAndBanded(async () => {
      const [values] = await take(T.cast(q, "f32"));
      // into a larger tensor from an element off every alignment
      const dst = T.Tensor.full(gpu, [x.length + 40], 7);
      T.dequantizeInto(q, dst, 13);
      const [placed] = await take(dst);
      const half = gpu.f16 ? (await take(T.tidy(() => T.cast(q, "f16"))))[0] : null;
      return { values, placed, half };
    });
    q.dispose();
    assertClose(banded.values, want, 1e-6, `${kind} → f32`);
    assertSame(banded.placed.subarray(0, 13), new Float32Array(13).fill(7), `${kind} into: before`);
    assertSame(banded.placed.subarray(13, 13 + x.length), banded.values, `${kind} into`);
    assertSame(banded.placed.subarray(13 + x.length), new Float32Array(27).fill(7), `${kind} into: after`);
    if (banded.half) {
      assertSame(banded.half, Float32Array.from(Float16Array.from(banded.values)), `${kind} → f16`);
    }
    assertSame(banded.values, whole.values, `${kind}: not as in one band`);
    assertSame(banded.placed, whole.placed, `${kind} into: not as in one band`);
  }
});

/** An embedding case: a table of `vocab` rows of 29 and 211 ids (24 KB of output). */
function embeddingCase(rng: Rng, vocab: number) {
  const d = 29;
  const ids = Int32Array.from([
    0,
    vocab - 1,
    ...Array.from({ length: MAX_RUN + 5 }, () => 3), // one id in runs
    ...Array.from({ length: 211 - MAX_RUN - 7 }, () => rng.int(vocab)),
  ]);
  return { d, ids, w: Float32Array.from(randArr(rng, [vocab, d]).data) };
}

// tables of 37 × 29 (4.3 KB as f32: over the limit too) and 11 × 29 (one band)
const VOCABS = [37, 11];

Deno.test("embedding whose output is over one binding: gathered in bands", async () => {
  const gpu = await getGpu();
  const rng = new Rng(13);
  for (const vocab of VOCABS) {
    const { d, ids, w } = embeddingCase(rng, vocab);
    const tables: [T.DType, Float64Array][] = [
      ["f32", Float64Array.from(w)],
      ["q8", dequantizeReference(quantizeReference(w, "q8"))],
      ["q4", dequantizeReference(quantizeReference(w, "q4"))],
    ];
    if (gpu.f16) tables.push(["f16", Float64Array.from(Float16Array.from(w))]);
    for (const [dtype, values] of tables) {
      // made in one band (quantizing in bands needs a wider limit: bands_tables_test.ts)
      const table = T.Tensor.from(gpu, w, [vocab, d], { dtype });
      const [[whole], [banded]] = await wholeAndBanded(() =>
        take(T.tidy(() => T.embedding(table, T.Tensor.from(gpu, ids, [ids.length]))))
      );
      table.dispose();
      assertClose(banded, embeddingForward(values, d, ids), 1e-7, `${dtype} ${vocab} rows`);
      assertSame(banded, whole, `${dtype} ${vocab} rows: not as in one band`);
    }
  }
});

Deno.test("embedding whose output gradient is over one binding: the scatter-add reads it in bands", async () => {
  const gpu = await getGpu();
  const rng = new Rng(15);
  for (const vocab of VOCABS) {
    const { d, ids, w } = embeddingCase(rng, vocab);
    const g = Float32Array.from(randArr(rng, [ids.length, d]).data);
    const run = async (limit: number) => {
      const table = T.Tensor.from(gpu, w, [vocab, d], { requiresGrad: true });
      // the forward in one band: only the gradient runs under the limit
      const rows = T.tidy(() => T.embedding(table, T.Tensor.from(gpu, ids, [ids.length]), { paddingIdx: 1 }));
      await limited(
        limit,
        () => Promise.resolve(T.tidy(() => rows.backward(T.Tensor.from(gpu, g, rows.shape)))),
      );
      rows.dispose();
      const [out] = await take(table.grad!);
      table.dispose();
      return out;
    };
    const [whole, banded] = [await run(0), await run(LIMIT)];
    const want = embeddingBackward(vocab, d, ids, Float64Array.from(g), 1);
    assertClose(banded, want, 1e-6, `${vocab} gradient`);
    assertSame(banded, whole, `${vocab} gradient: not as in one band`);
  }
});
