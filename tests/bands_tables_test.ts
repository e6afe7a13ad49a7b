// Tables over one storage binding (a large vocabulary's embedding on a device whose bindings stop
// at 128 MiB: RoBERTa-base's and GPT-2's f32 tables are 154 MB): the gather, its gradient, its
// optimiser update and the models that train through them, checked under a lowered binding limit
// against float64 and against the same calls in one band.
import { assert, assertClose, assertEquals } from "./assert.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { embeddingBackward, embeddingForward } from "../lib/tensor/reference/embedding.ts";
import { dequantizeReference, quantizeReference } from "../lib/tensor/reference/quant.ts";
import { embedding, quantize, Tensor, tidy } from "../lib/tensor/mod.ts";
import { MAX_RUN } from "../lib/tensor/ops/embedding.ts";
import { AdamW } from "../lib/train/optim.ts";
import type { Method } from "../lib/cli/method.ts";
import type { TaskName } from "../lib/train/tasks.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { trainingStep } from "./model_helpers.ts";
import { limited } from "./tensor_helpers.ts";

Deno.test("embedding over one binding: each dtype's rows gathered in bands, the gradient written in bands", async () => {
  const gpu = await getGpu();
  // against a 14 KiB limit: 125 KB as f32 in 9 bands, 15.6 KB as q4 (its last group part-filled) in 2
  const [vocab, d, limit] = [1009, 31, 14336];
  const p = new Prng(3);
  const w = Float32Array.from(p.normals(vocab * d));
  // the first and last rows, ids at band edges, one id past MAX_RUN (its gradient sums in runs)
  const ids = Int32Array.from([
    0,
    vocab - 1,
    // each band's last row and the next one's first: f32 (115 rows a band), f16 (230), q8 (461), q4 (922)
    ...[115, 230, 461, 922].flatMap((r) => [r - 1, r]),
    ...Array.from({ length: MAX_RUN + 5 }, () => 42),
    ...Array.from({ length: 28 }, () => p.below(vocab)),
  ]);
  const tokens = ids.length;
  const tables: [string, () => Tensor, Float64Array][] = [
    ["f32", () => Tensor.from(gpu, w, [vocab, d]), Float64Array.from(w)],
    ...(["q8", "q4"] as const).map((kind): [string, () => Tensor, Float64Array] => [
      kind,
      () => tidy(() => quantize(Tensor.from(gpu, w, [vocab, d]), kind)),
      dequantizeReference(quantizeReference(w, kind)),
    ]),
  ];
  if (gpu.f16) {
    tables.push([
      "f16",
      () => Tensor.from(gpu, w, [vocab, d], { dtype: "f16" }),
      Float64Array.from(Float16Array.from(w)),
    ]);
  }
  for (const [dtype, make, values] of tables) {
    const before = gpu.stream.dispatches;
    const [table, rows] = await limited(limit, async () => {
      const table = make(); // quantized in bands too
      return [table, await tidy(() => embedding(table, Tensor.from(gpu, ids, [tokens]))).toArray()] as const;
    });
    assert(gpu.stream.dispatches - before >= 3, `${dtype}: the gather ran in one dispatch`);
    assertClose(rows, embeddingForward(values, d, ids), 1e-6, `${dtype} rows`);
    table.dispose();
  }
  // ids made on the GPU are not checked on the host: one outside the table reads as a zero row
  const outside = Int32Array.of(-1, 5, vocab, 300);
  const zeros = await limited(limit, () =>
    tidy(() => {
      const table = Tensor.from(gpu, w, [vocab, d]);
      const picks = Tensor.from(gpu, outside, [4]);
      picks.host = undefined;
      return embedding(table, picks);
    }).toArray());
  const want = embeddingForward(Float64Array.from(w), d, Int32Array.of(0, 5, 0, 300));
  want.fill(0, 0, d).fill(0, 2 * d, 3 * d);
  assertClose(zeros, want, 0, "ids outside the table");
  // the gradient: bands of the table's rows, each taking the ids in it
  const g = Float32Array.from(p.normals(tokens * d));
  const grad = await limited(limit, async () => {
    const table = Tensor.from(gpu, w, [vocab, d]);
    table.requiresGrad = true;
    tidy(() =>
      embedding(table, Tensor.from(gpu, ids, [tokens]), { paddingIdx: 115 }).backward(
        Tensor.from(gpu, g, [tokens, d]),
      )
    );
    const out = await table.grad!.toArray();
    table.grad!.dispose();
    table.dispose();
    return out;
  });
  assertClose(grad, embeddingBackward(vocab, d, ids, Float64Array.from(g), 115), 1e-5, "gradient");
});

Deno.test("AdamW with clipping over a parameter over one binding: the same update in bands", async () => {
  const gpu = await getGpu();
  const p = new Prng(8);
  const shapes = [[97, 41], [13]]; // 15.9 KB against a 4 KiB limit, and a small one
  const init = shapes.map((s) => Float32Array.from(p.normals(s.reduce((a, b) => a * b, 1))));
  const grads = shapes.map((s) => Float32Array.from(p.normals(s.reduce((a, b) => a * b, 1)), (x) => 3 * x));
  const run = async () => {
    const params = init.map((x, i) => Object.assign(Tensor.from(gpu, x, shapes[i]), { requiresGrad: true }));
    const opt = new AdamW(gpu, params, { lr: 0.01, weightDecay: 0.1, maxGradNorm: 1 });
    for (let step = 0; step < 2; step++) {
      params.forEach((t, i) => t.grad = Tensor.from(gpu, grads[i], shapes[i]));
      opt.step();
      opt.zeroGrad();
    }
    const out = await Promise.all([...params.map((t) => t.toArray()), opt.gradNorm.toArray()]);
    params.forEach((t) => t.dispose());
    return out;
  };
  const whole = await run();
  // (the stream refuses any binding over the lowered limit: this runs only in bands)
  const banded = await limited(4096, run);
  banded.forEach((x, i) => assertClose(x, whole[i], 1e-6, `tensor ${i}`));
});

Deno.test("models whose embedding tables are over one binding train as with one band", async () => {
  const gpu = await getGpu();
  // 64 KiB: the fixtures' 512 × 64 f32 tables (128 KiB) are over it, their layers are not
  const cases: [string, TaskName, Method, "f32" | "q8"][] = [
    ["gpt2", "causal-lm", "full", "f32"], // the tied table: two gradients summed, then AdamW's state
    ["roberta", "seq-cls", "ssh", "f32"],
    ["llama", "causal-lm", "lora", "q8"],
    ["bert", "seq-cls", "fourierft", "f32"],
  ];
  for (const [name, task, method, dtype] of cases) {
    const whole = await trainingStep(name, task, method, dtype);
    const before = gpu.stream.dispatches;
    const banded = await limited(65536, () => trainingStep(name, task, method, dtype));
    assert(gpu.stream.dispatches > before, "nothing ran");
    const what = `${name} ${method} ${dtype}`;
    assertClose([banded.loss], [whole.loss], 1e-6, `${what} loss`);
    assertEquals(banded.grads.length, whole.grads.length);
    banded.grads.forEach((g, i) => assertClose(g, whole.grads[i], 1e-5, `${what} gradient ${i}`));
  }
});
