// Tensors over one storage binding (an LM head's logits at thousands of tokens and a large
// vocabulary) run in bands of rows: the products, cross-entropy and argmax, checked on small
// tensors under a lowered binding limit against the same calls in one band and float64.
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { getGpu, type Gpu, readF32, upload } from "../lib/gpu/mod.ts";
import { bandBinding, BINDING_LIMIT, rowBands, unitBands, unitBinding } from "../lib/gpu/bands.ts";
import { encodeMatmul } from "../lib/linalg/matmul.ts";
import type { MatmulOptions } from "../lib/linalg/matmul_plan.ts";
import { matmulReference } from "../lib/linalg/reference.ts";
import { argmax, crossEntropy, slice, Tensor } from "../lib/tensor/mod.ts";
import { argmaxKernel } from "../kernels/reduce.ts";
import { loadModel } from "../lib/models/load.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { dequantizeReference, quantizeReference } from "../lib/tensor/reference/quant.ts";
import { packCodes, type QuantKind } from "../lib/tensor/quant_format.ts";
import { randomIds, tokenBatch } from "./model_helpers.ts";
import { FIXTURES } from "./peft_helpers.ts";
import { limited } from "./tensor_helpers.ts";

Deno.test("rowBands: aligned windows that hold their rows, within the limit", async () => {
  const gpu = await getGpu();
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  await limited(1024, () => {
    for (
      const [rows, width, offset, bytes] of [[10, 37, 0, 4], [7, 100, 13, 4], [9, 251, 3, 2], [1, 5, 0, 4]]
    ) {
      const bands = rowBands(gpu, rows, width, "test", { offset, elementBytes: bytes });
      assertEquals(bands.reduce((n, b) => n + b.rows, 0), rows);
      for (const [i, b] of bands.entries()) {
        assertEquals(b.first, i === 0 ? 0 : bands[i - 1].first + bands[i - 1].rows);
        assert(b.start % align === 0 && b.size <= 1024, `band ${JSON.stringify(b)} not aligned or too big`);
        assertEquals(b.start + b.base * bytes, (offset + b.first * width) * bytes);
        assert(b.start + b.size >= (offset + (b.first + b.rows) * width) * bytes, "the window ends early");
      }
    }
    assertEquals(rowBands(gpu, 3, 10, "test").length, 1);
    assertThrows(() => rowBands(gpu, 2, 400, "logits"), "logits: one row of 1600 bytes");
    return Promise.resolve();
  });
  const buffer = gpu.pool.acquire(4096);
  assertEquals(bandBinding(gpu, buffer, rowBands(gpu, 4, 16, "x")[0]), buffer);
  gpu.pool.release(buffer);
});

Deno.test("unitBands: aligned windows of every buffer, each within the limit, covering the units", async () => {
  const gpu = await getGpu();
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const [f32, codes, scales] = [
    gpu.pool.acquire(1000 * 128),
    gpu.pool.acquire(1000 * 32),
    gpu.pool.acquire(1000 * 4),
  ];
  const buffers: [GPUBuffer, number][] = [[f32, 128], [codes, 32], [scales, 4]]; // groups of 32 values, q8
  assertEquals(unitBands(gpu, 1000, buffers), [{ first: 0, count: 1000 }]);
  await limited(16 * align * 8, () => {
    const bands = unitBands(gpu, 1000, buffers);
    assert(bands.length > 1, "one band");
    assertEquals(bands.reduce((n, b) => n + b.count, 0), 1000);
    for (const [i, band] of bands.entries()) {
      assertEquals(band.first, i === 0 ? 0 : bands[i - 1].first + bands[i - 1].count);
      for (const [buffer, bytes] of buffers) {
        const w = unitBinding(gpu, buffer, bytes, band);
        const [offset, size] = w instanceof GPUBuffer ? [0, w.size] : [w.offset, w.size];
        assert(offset % align === 0 && size <= 16 * align * 8, `window at ${offset}, ${size} bytes`);
        assertEquals(offset, w instanceof GPUBuffer ? 0 : band.first * bytes);
      }
    }
    // not even one aligned band of scales fits
    BINDING_LIMIT.bytes = 1024;
    assertThrows(() => unitBands(gpu, 1000, buffers), "is over the largest storage binding");
    return Promise.resolve();
  });
  for (const b of [f32, codes, scales]) gpu.pool.release(b);
});

Deno.test("crossEntropy and argmax over logits in bands equal one band's", async () => {
  const gpu = await getGpu();
  const [rows, v] = [29, 53]; // 212 bytes a row: 3 rows a band under a 1 KiB limit
  const p = new Prng(5);
  const logits = Float32Array.from(p.normals(rows * v), (x) => 3 * x);
  const targets = Int32Array.from({ length: rows }, (_, i) => (i % 7 === 3 ? -100 : (i * 17) % v));
  const run = async () => {
    const x = Tensor.from(gpu, logits, [rows, v]);
    x.requiresGrad = true;
    const loss = crossEntropy(x, Tensor.from(gpu, targets, [rows]));
    loss.backward();
    const out = {
      loss: await loss.item(),
      grad: await x.grad!.toArray(),
      picks: await argmax(x).toArray(),
    };
    x.grad!.dispose();
    x.dispose();
    return out;
  };
  const whole = await run();
  const banded = await limited(1024, run);
  assertEquals(banded.loss, whole.loss);
  assertEquals(Array.from(banded.grad), Array.from(whole.grad));
  assertEquals(Array.from(banded.picks), Array.from(whole.picks));
  // and the values are right: the argmax of each row, the mean loss over counted rows
  const want = Array.from({ length: rows }, (_, r) => {
    const row = Array.from(logits.subarray(r * v, (r + 1) * v));
    return row.indexOf(Math.max(...row));
  });
  assertEquals(Array.from(whole.picks), want);
  let sum = 0, count = 0;
  for (let r = 0; r < rows; r++) {
    if (targets[r] === -100) continue;
    const row = Array.from(logits.subarray(r * v, (r + 1) * v));
    const mx = Math.max(...row);
    sum += mx + Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0)) - row[targets[r]];
    count++;
  }
  assertClose([whole.loss], [sum / count], 1e-5, "loss");
});

/** The options of one banded product: a bias row is drawn when `bias`, B quantized as `quant`. */
type BandedOptions = Omit<MatmulOptions, "bias" | "quantB"> & { bias?: boolean; quant?: QuantKind };

/** C = op(A)·op(B) under a lowered limit, against float64; B as f32, f16, q8 or q4. */
async function checkBanded(gpu: Gpu, m: number, n: number, k: number, opts: BandedOptions, limit: number) {
  const { quant, bias: withBias, ...rest } = opts;
  const p = new Prng(m * 31 + n * 7 + k);
  const a = Float32Array.from(p.normals(m * k)), bf = Float32Array.from(p.normals(k * n));
  const q = quant ? quantizeReference(bf, quant) : null;
  const bValues = q ? Float32Array.from(dequantizeReference(q)) : opts.f16B ? Float16Array.from(bf) : bf;
  const bias = withBias ? Float32Array.from(p.normals(n)) : undefined;
  const start = opts.accumulate ? Float32Array.from(p.normals(m * n)) : new Float32Array(m * n);
  const [ab, bb, cb] = [
    upload(gpu, a),
    upload(gpu, q ? packCodes(q.codes, quant!) : bValues),
    upload(gpu, start),
  ];
  const scales = q ? upload(gpu, Float32Array.from(q.scales)) : undefined;
  const biasBuffer = bias ? upload(gpu, bias) : undefined;
  const dispatches = gpu.stream.dispatches;
  await limited(limit, () => {
    encodeMatmul(gpu, ab, bb, cb, m, n, k, {
      ...rest,
      bias: biasBuffer,
      ...(q ? { quantB: { kind: quant!, scales: scales! } } : {}),
    });
    return Promise.resolve();
  });
  assert(gpu.stream.dispatches - dispatches > 1, `${m}×${n}×${k} ${JSON.stringify(opts)} ran in one band`);
  const want = matmulReference(a, bValues, m, n, k, { transA: opts.transA, transB: opts.transB }).map((
    x,
    i,
  ) => x + (bias ? bias[i % n] : 0) + start[i]);
  assertClose(await readF32(gpu, cb, m * n), want, 1e-5, `banded ${m}×${n}×${k} ${JSON.stringify(opts)}`);
  for (const buf of [ab, bb, cb, ...(biasBuffer ? [biasBuffer] : []), ...(scales ? [scales] : [])]) {
    gpu.pool.release(buf);
  }
}

Deno.test("matmul: operands over one binding run in bands of rows, of B's rows or of K", async () => {
  const gpu = await getGpu();
  // 4 KiB: C of 37 × 67 (9.9 KB) in rows; A (61 × 19 read transposed, 4.6 KB) along K; B (n = 70) in rows
  await checkBanded(gpu, 37, 67, 13, {}, 4096);
  await checkBanded(gpu, 37, 67, 13, { transB: true, bias: true, accumulate: true }, 4096);
  await checkBanded(gpu, 19, 13, 61, { transA: true, bias: true }, 4096);
  await checkBanded(gpu, 19, 13, 61, { transA: true, accumulate: true }, 4096);
  await checkBanded(gpu, 5, 70, 33, { transB: true }, 4096);
  if (gpu.f16) await checkBanded(gpu, 5, 70, 65, { transB: true, f16B: true }, 4096);
  // a plain B over (a large layer's input gradient, δ·W): along K
  await checkBanded(gpu, 5, 19, 70, { bias: true }, 4096);
  if (gpu.f16) await checkBanded(gpu, 5, 37, 70, { f16B: true }, 4096);
  // two operands over: C's rows first, then K (A transposed and B, or A and B) or B's rows
  await checkBanded(gpu, 37, 40, 61, { transA: true }, 4096);
  await checkBanded(gpu, 37, 19, 70, { accumulate: true }, 4096);
  await checkBanded(gpu, 37, 70, 19, { transB: true }, 4096);
  // a biased nn.Linear weight over: its bias row bound from each band's first column
  await checkBanded(gpu, 9, 300, 20, { transB: true, bias: true }, 8192);
  // quantized B over (a large vocabulary's q8 head; a q4 weight's input gradient): codes and scales in windows
  await checkBanded(gpu, 6, 700, 64, { transB: true, quant: "q8" }, 16384);
  await checkBanded(gpu, 6, 64, 1100, { quant: "q4" }, 16384);
  await checkBanded(gpu, 70, 600, 64, { transB: true, quant: "q8", bias: true }, 16384);
  // scales over one binding too (8 KB each; a 128k-vocabulary q4 head under 128 MiB): windows of both
  await checkBanded(gpu, 2, 500, 128, { transB: true, quant: "q8" }, 4096);
  await checkBanded(gpu, 2, 128, 512, { quant: "q4" }, 4096);
  const [big, c] = [gpu.pool.acquire(64 * 1024), gpu.pool.acquire(64 * 1024)];
  await limited(4096, () => {
    // an epilogue activation reads a pre-activation laid out like C: never banded
    const activation = { kind: "relu" as const, pre: big };
    assertThrows(
      () => encodeMatmul(gpu, big, big, c, 64, 64, 64, { activation }),
      "cannot be cut into bands",
    );
    return Promise.resolve();
  });
  for (const buf of [big, c]) gpu.pool.release(buf);
});

Deno.test("a causal LM whose logits are over one binding: the same loss and gradients", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/gpt2`);
  try {
    // 4 × 32 tokens × 512 classes: 256 KiB of logits against a 160 KiB limit (every weight under it)
    const [b, t] = [4, 32];
    const ids = randomIds(b * t, 500, 3);
    for (const [, p] of model.parameters) p.requiresGrad = true; // the tied head's gradient: K bands
    const run = async () => {
      const out = model.forward(tokenBatch(gpu, ids, b, t, { labels: ids }));
      out.loss!.backward();
      const picks = await argmax(out.logits).toArray();
      const result = {
        loss: await out.loss!.item(),
        picks,
        // a row of the logits, as evaluation slices them (a buffer copy out of a banded tensor)
        row: await slice(out.logits, 0, 1, 2).toArray(),
        grads: await Promise.all([...model.parameters.values()].map((p) => p.grad!.toArray())),
      };
      for (const [, p] of model.parameters) [p.grad?.dispose(), p.grad = null];
      return result;
    };
    const whole = await run();
    const banded = await limited(160 * 1024, run);
    assertClose([banded.loss], [whole.loss], 1e-6, "loss");
    assertEquals(Array.from(banded.picks), Array.from(whole.picks));
    assertEquals(Array.from(banded.row), Array.from(whole.row));
    banded.grads.forEach((g, i) => assertClose(g, whole.grads[i], 1e-5, `gradient ${i}`));
  } finally {
    model.dispose();
  }
});

Deno.test("a binding over the device's limit is a clear error naming the kernel and buffer", async () => {
  const gpu = await getGpu();
  const limit = gpu.limits.maxStorageBufferBindingSize;
  if (limit > 2 ** 28) return; // a buffer over it would take gigabytes here
  const big = gpu.device.createBuffer({ size: limit + 256, usage: GPUBufferUsage.STORAGE, label: "huge" });
  const out = gpu.pool.acquire(64);
  try {
    assertThrows(
      () => gpu.stream.dispatch(argmaxKernel, [big, out], 1, new Uint32Array([1, 4, 0, 0])),
      `reduce.argmax: binding 0 (buffer 'huge') spans ${limit + 256} bytes`,
    );
  } finally {
    big.destroy();
    gpu.pool.release(out);
  }
});

Deno.test("slicing rows out of a tensor over one binding is a buffer copy", async () => {
  const gpu = await getGpu();
  const values = Float32Array.from({ length: 8 * 64 }, (_, i) => i * 0.5);
  const x = Tensor.from(gpu, values, [8, 64]); // 2 KiB against a 1 KiB limit
  await limited(1024, async () => {
    const before = gpu.stream.dispatches;
    const row = slice(x, 0, 2, 4);
    assertEquals(gpu.stream.dispatches, before, "a kernel ran");
    assertEquals(Array.from(await row.toArray()), Array.from(values.subarray(128, 256)));
    row.dispose();
  });
  x.dispose();
});

Deno.test("slice over one storage binding: forward and gradient in bands of whole outer blocks equal one band's", async () => {
  const gpu = await getGpu();
  // [13, 9, 7] f32: 252 bytes an outer block, 3276 in all; a 1 KiB limit takes 3 blocks a band
  const shape = [13, 9, 7];
  const p = new Prng(8);
  const data = Float32Array.from(p.normals(13 * 9 * 7));
  for (const [axis, lo, hi] of [[1, 2, 7], [1, 0, 1], [2, 3, 7], [1, 8, 9]]) {
    const g = Float32Array.from(p.normals(13 * (axis === 1 ? hi - lo : 9) * (axis === 2 ? hi - lo : 7)));
    const run = async () => {
      const x = Tensor.from(gpu, data, shape, { requiresGrad: true });
      const y = slice(x, axis, lo, hi);
      y.backward(Tensor.from(gpu, g, y.shape));
      // pooled buffers full of NaN first would show an unwritten gradient element
      const out = { y: await y.toArray(), dx: await x.grad!.toArray() };
      x.grad!.dispose();
      x.dispose();
      return out;
    };
    for (const junk of [0, 1, 2].map(() => Tensor.full(gpu, shape, NaN))) junk.dispose();
    const whole = await run();
    for (const junk of [0, 1, 2].map(() => Tensor.full(gpu, shape, NaN))) junk.dispose();
    const banded = await limited(1024, run);
    const what = `axis ${axis} [${lo}, ${hi})`;
    assertEquals(Array.from(banded.y), Array.from(whole.y), `${what}: y`);
    assertEquals(Array.from(banded.dx), Array.from(whole.dx), `${what}: dx`);
    // and right: y the window, dx g in it and zeros around
    const at = (i: number, j: number, k: number) => (i * 9 + j) * 7 + k;
    const [w1, w2] = axis === 1 ? [hi - lo, 7] : [9, hi - lo];
    for (let i = 0; i < 13; i++) {
      for (let j = 0; j < 9; j++) {
        for (let k = 0; k < 7; k++) {
          const [jj, kk] = axis === 1 ? [j - lo, k] : [j, k - lo];
          const inside = jj >= 0 && jj < w1 && kk >= 0 && kk < w2;
          const e = (i * w1 + jj) * w2 + kk;
          assertEquals(whole.dx[at(i, j, k)], inside ? g[e] : 0, `${what}: dx at ${[i, j, k]}`);
          if (inside) assertEquals(whole.y[e], data[at(i, j, k)], `${what}: y at ${[i, j, k]}`);
        }
      }
    }
  }
});
