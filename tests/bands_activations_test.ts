// Activations over one storage binding (a feed-forward layer's [tokens, 3072] on a device whose
// bindings stop at 128 MiB, from ≈ 11,000 tokens a batch): elementwise ops and sums over the
// first axis in bands, checked under a lowered binding limit against float64, and models whose
// feed-forward activations are over the limit against the same step in one band.
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import type { Method } from "../lib/cli/method.ts";
import * as T from "../lib/tensor/mod.ts";
import { ACTIVATIONS } from "../lib/tensor/reference/activations.ts";
import { broadcast, map, sumAxes } from "../lib/tensor/reference/array.ts";
import type { TaskName } from "../lib/train/tasks.ts";
import { trainingStep } from "./model_helpers.ts";
import { expectClose, leaf, limited, randArr, Rng } from "./tensor_helpers.ts";

Deno.test("elementwise ops over one binding: forward and gradients in bands", async () => {
  const gpu = await getGpu();
  const rng = new Rng(5);
  // 4 KiB bindings: 8,000 floats (vec4 units) and 7,063 (single floats) in 8 and 7 bands
  for (const shape of [[1000, 8], [1009, 7]]) {
    const x = randArr(rng, shape), b = randArr(rng, shape), g = randArr(rng, shape);
    const before = gpu.stream.dispatches;
    await limited(4096, async () => {
      const tx = leaf(gpu, x), tb = leaf(gpu, b);
      const y = T.mul(T.gelu(tx, "tanh"), tb);
      y.backward(leaf(gpu, g, false));
      const act = map(x, ACTIVATIONS.gelu_tanh.f);
      await expectClose(y, broadcast(act, b, (u, v) => u * v), 1e-5, `${shape} forward`);
      const dAct = broadcast(g, b, (u, v) => u * v);
      await expectClose(
        tx.grad,
        map(x, (v, i) => ACTIVATIONS.gelu_tanh.df(v) * dAct.data[i]),
        1e-5,
        `${shape} ∂x`,
      );
      await expectClose(tb.grad, broadcast(g, act, (u, v) => u * v), 1e-5, `${shape} ∂b`);
    });
    // gelu, mul, and three gradient products, each in several bands
    assert(gpu.stream.dispatches - before >= 5 * 7, `${shape}: the ops ran in one band`);
  }
});

Deno.test("sums over the leading axes of a tensor over one binding run in bands", async () => {
  const gpu = await getGpu();
  const rng = new Rng(6);
  const cases: [number[], number[]][] = [
    [[1009, 7], [0]], // a bias gradient's column sums
    [[3, 1001, 5], [0, 1]],
    [[2003], [0]], // all of it
    [[997, 3, 2], [0, 2]],
  ];
  for (const [shape, axes] of cases) {
    const x = randArr(rng, shape);
    const got = await limited(4096, () => T.tidy(() => T.sum(leaf(gpu, x, false), axes)).toArray());
    const want = sumAxes(x, axes);
    assertClose(got, want.data, 1e-6, `sum of ${shape} over ${axes}`);
  }
  const mean = await limited(
    4096,
    () =>
      T.tidy(() => T.mean(T.Tensor.from(gpu, new Float32Array(3000).fill(2), [1500, 2]), 0, true)).toArray(),
  );
  assertClose(mean, [2, 2], 1e-6, "mean");
  await limited(4096, () => {
    const x = leaf(gpu, randArr(rng, [1009, 7]), false);
    assertThrows(() => T.sum(x, 1), "only a sum over its leading axes runs in bands");
    x.dispose();
    return Promise.resolve();
  });
});

Deno.test("models whose feed-forward activations are over one binding train as with one band", async () => {
  const gpu = await getGpu();
  // in training mode (dropout on), 1,024 tokens of 64-wide fixtures: hidden states (256 KiB) fit
  // the limit; each feed-forward layer's inner activations (GPT-2 256 wide: 1 MiB; RoBERTa and
  // BERT 128: 512 KiB; LLaMA 176: 704 KiB), the attention probabilities (1 MiB: the fused
  // kernels) and GPT-2's logits do not
  const cases: [string, TaskName, Method, number, number][] = [
    ["gpt2", "causal-lm", "full", 256, 800_000], // its packed q/k/v (768 KiB) fits one binding
    ["roberta", "seq-cls", "ssh", 128, 300_000],
    ["llama", "causal-lm", "lora", 176, 300_000],
    ["bert", "seq-cls", "fourierft", 128, 300_000],
  ];
  const [b, t] = [16, 64];
  for (const [name, task, method, inner, limit] of cases) {
    assert(b * t * inner * 4 > limit && b * t * 64 * 4 < limit, `${name}: the limit does not fall between`);
    const whole = await trainingStep(name, task, method, "f32", [b, t], true);
    const before = gpu.stream.dispatches;
    const banded = await limited(limit, () => trainingStep(name, task, method, "f32", [b, t], true));
    assert(gpu.stream.dispatches > before, "nothing ran");
    const what = `${name} ${method}`;
    assertClose([banded.loss], [whole.loss], 1e-6, `${what} loss`);
    assertEquals(banded.grads.length, whole.grads.length);
    banded.grads.forEach((g, i) => assertClose(g, whole.grads[i], 1e-5, `${what} gradient ${i}`));
  }
});
