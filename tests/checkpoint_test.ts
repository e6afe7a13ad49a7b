import { getGpu } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { loraConfig, sshConfig } from "../lib/peft/config.ts";
import * as T from "../lib/tensor/mod.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { FIXTURES } from "./peft_helpers.ts";
import { leaf, randArr, Rng } from "./tensor_helpers.ts";
import { randomIds, tempModelDir, tokenBatch } from "./model_helpers.ts";

Deno.test("checkpoint: the same output and gradients; parameters inside get theirs; extras outlive the caller's", async () => {
  const gpu = await getGpu();
  const rng = new Rng(60);
  const x = randArr(rng, [5, 7]),
    w = randArr(rng, [6, 7]),
    m = randArr(rng, [5, 6]),
    g = randArr(rng, [5, 6]);
  const f = (h: T.Tensor, weight: T.Tensor, scale: T.Tensor) => T.mul(T.tanh(T.linear(h, weight)), scale);
  const run = async (mode: "plain" | "checkpoint", xNeedsGrad: boolean) => {
    const [tx, tw] = [leaf(gpu, x, xNeedsGrad), leaf(gpu, w)];
    const tm = leaf(gpu, m, false);
    const y = mode === "plain" ? f(tx, tw, tm) : T.checkpoint((h, s) => f(h, tw, s), tx, tm);
    const out = await y.toArray();
    tm.dispose();
    // the pool hands the freed buffer out again, overwritten
    const reuse = T.Tensor.from(gpu, new Float32Array(30).fill(7), [5, 6]);
    y.backward(leaf(gpu, g, false));
    reuse.dispose();
    const result = { out, gw: await tw.grad!.toArray(), gx: tx.grad ? await tx.grad.toArray() : null };
    for (const t of [tx, tw, y]) t.dispose();
    return result;
  };
  for (const xNeedsGrad of [true, false]) {
    const plain = await run("plain", xNeedsGrad), ckpt = await run("checkpoint", xNeedsGrad);
    assertEquals(Array.from(ckpt.out), Array.from(plain.out), "output");
    assertEquals(Array.from(ckpt.gw), Array.from(plain.gw), "the parameter's gradient");
    if (xNeedsGrad) assertClose(ckpt.gx!, plain.gx!, 1e-7, "the input's gradient");
    else assertEquals(ckpt.gx, null);
  }
  const tx = leaf(gpu, x), tw = leaf(gpu, w, false), tm = leaf(gpu, m, false);
  const y = T.noGrad(() => T.checkpoint((h, s) => f(h, tw, s), tx, tm));
  assert(!y.requiresGrad, "under noGrad: no tape");
  for (const t of [tx, tw, tm, y]) t.dispose();
});

Deno.test("checkpoint: fn returning its input or an extra input keeps that tensor's node; extra inputs that train are refused", async () => {
  const gpu = await getGpu();
  const key = { seed: 1, step: 0 };
  // a non-leaf input that fn returns as is (dropout with p = 0): its producer still gets the gradient
  const x = T.Tensor.from(gpu, [1, 2, 3], [3], { requiresGrad: true });
  const h = T.scale(x, 2);
  const y = T.checkpoint((t) => T.dropout(t, 0, key), h);
  assert(y !== h && h.node?.op !== "checkpoint", "h's node was overwritten");
  T.sum(T.mul(y, y)).backward();
  assertEquals(Array.from(await x.grad!.toArray()), [8, 16, 24], "through the identity");
  // a leaf stays a leaf
  const leafX = T.Tensor.from(gpu, [1, 2, 3], [3], { requiresGrad: true });
  const same = T.checkpoint((t) => t, leafX);
  assert(leafX.isLeaf, "the input is no longer a leaf");
  T.sum(T.mul(same, same)).backward();
  assertEquals(Array.from(await leafX.grad!.toArray()), [2, 4, 6], "a leaf through the identity");
  // an extra input returned: a constant to x, which gets the gradient of its other use alone
  const z = T.Tensor.from(gpu, [1, 2, 3], [3], { requiresGrad: true });
  const m = T.Tensor.from(gpu, [4, 5, 6], [3]);
  const picked = T.checkpoint((_, mask) => mask, z, m);
  assert(m.isLeaf && !m.requiresGrad, "the extra input now records a gradient");
  T.sum(T.mul(picked, z)).backward();
  assertEquals(Array.from(await z.grad!.toArray()), [4, 5, 6], "x's gradient with an extra input returned");
  assertThrows(
    () => T.checkpoint((a, b) => T.mul(a, b), z, x),
    "extra input 0 (f32 [3]) requires a gradient",
  );
  assertThrows(() => T.checkpoint(() => h, z), "fn returned a tensor (f32 [3]) that it did not compute");
  for (const t of [x, h, y, leafX, same, z, m, picked]) t.dispose();
});

const FAMILIES = ["gpt2", "llama", "bert", "roberta", "vit"];

for (const [family, method] of FAMILIES.flatMap((f) => [[f, "lora"], [f, "ssh"]] as const)) {
  Deno.test(`${family}: gradient checkpointing gives the same train-mode loss and ${method} gradients, in less memory`, async () => {
    const gpu = await getGpu();
    const dir = `${FIXTURES}models/${family}`;
    const run = async (checkpointing: boolean) => {
      const model = await loadModel(gpu, dir);
      const config = method === "lora"
        ? loraConfig({ r: 2, loraAlpha: 4, loraDropout: 0.2, initLoraWeights: false })
        : sshConfig({ n: 40, init: "normal" });
      const peft = await attachAdapter(model, config, { seed: 3 });
      peft.train(true);
      model.gradientCheckpointing = checkpointing;
      const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
      await gpu.sync();
      gpu.pool.trim();
      gpu.pool.resetPeak();
      const base = gpu.pool.stats().allocated;
      const loss = T.tidy(() => model.forward(batch).loss!);
      // another train-mode forward before backward (its dropout step is the next one): the
      // rerun must still draw the first pass's masks
      T.noGrad(() => T.tidy(() => model.forward(batch)));
      loss.backward();
      const value = await loss.item();
      const peak = gpu.pool.stats().peak - base;
      const grads = await Promise.all(peft.parameters().map((p) => p.grad!.toArray()));
      loss.dispose();
      peft.detach();
      model.dispose();
      return { value, peak, grads };
    };
    const plain = await run(false), ckpt = await run(true);
    assertEquals(ckpt.value, plain.value, "loss");
    plain.grads.forEach((g, i) => assertClose(ckpt.grads[i], g, 1e-6, `gradient ${i}`));
    assert(plain.grads.some((g) => g.some((v) => v !== 0)), "zero gradients");
    assert(ckpt.peak < plain.peak, `peak ${ckpt.peak} bytes with checkpointing, ${plain.peak} without`);
  });
}

/**
 * One train-mode forward and backward of the fixture `family` with the parameters `trained`
 * picks: their gradients, and the dispatches backward took.
 */
async function trainedPass(family: string, checkpointing: boolean, trained: (key: string) => boolean) {
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/${family}`;
  const model = await loadModel(gpu, dir);
  model.train(true);
  model.gradientCheckpointing = checkpointing;
  const params = [...model.parameters].filter(([k]) => trained(k)).map(([, t]) => t);
  for (const p of params) p.requiresGrad = true;
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  const loss = T.tidy(() => model.forward(batch).loss!);
  const before = gpu.stream.dispatches;
  loss.backward();
  const backward = gpu.stream.dispatches - before;
  const grads = await Promise.all(params.map((p) => p.grad!.toArray()));
  loss.dispose();
  model.dispose();
  return { backward, grads };
}

Deno.test("gpt2: gradient checkpointing with every weight trained (full fine-tuning): the same gradients", async () => {
  const plain = await trainedPass("gpt2", false, () => true),
    ckpt = await trainedPass("gpt2", true, () => true);
  plain.grads.forEach((g, i) => assertClose(ckpt.grads[i], g, 1e-6, `gradient of parameter ${i}`));
});

Deno.test("roberta: training the head alone, gradient checkpointing recomputes nothing in backward", async () => {
  const head = (key: string) => key.startsWith("classifier.");
  const plain = await trainedPass("roberta", false, head), ckpt = await trainedPass("roberta", true, head);
  assertEquals(ckpt.backward, plain.backward, "backward dispatches");
  plain.grads.forEach((g, i) => assertEquals(Array.from(ckpt.grads[i]), Array.from(g), `gradient ${i}`));
});

for (const family of ["gpt2", "llama"]) {
  Deno.test(`${family}: a classifier's headOnly pass, checkpointed, backpropagates after its forward's tidy freed the pooled key mask`, async () => {
    const gpu = await getGpu();
    const dir = await tempModelDir(`${FIXTURES}models/${family}`, { pad_token_id: 0 });
    const [b, t] = [2, 8];
    const ids = Int32Array.from(randomIds(b * t, 50, 5), (v) => v + 1);
    ids.fill(0, 13, 16); // row 1: right padding, so the key mask is not all ones
    const mask = Int32Array.from(ids, (v) => (v === 0 ? 0 : 1));
    const run = async (checkpointing: boolean) => {
      const model = await loadModel(gpu, dir, { task: "seq-cls", numLabels: 2, seed: 4 });
      const peft = await attachAdapter(
        model,
        loraConfig({ r: 2, initLoraWeights: false, taskType: "SEQ_CLS" }),
        {
          seed: 3,
        },
      );
      peft.train(true);
      model.gradientCheckpointing = checkpointing;
      const batch = tokenBatch(gpu, ids, b, t, { mask, labels: Int32Array.of(0, 1) });
      const loss = T.tidy(() => model.forward(batch, { headOnly: true }).loss!);
      // the pool hands the freed key mask's buffer out again, overwritten
      const reuse = T.Tensor.from(gpu, new Int32Array(b * t), [b, t]);
      loss.backward();
      reuse.dispose();
      const value = await loss.item();
      const grads = await Promise.all(peft.parameters().map((p) => p.grad!.toArray()));
      loss.dispose();
      peft.detach();
      model.dispose();
      return { value, grads };
    };
    try {
      const plain = await run(false), ckpt = await run(true);
      assertEquals(ckpt.value, plain.value, "loss");
      assert(plain.grads.some((g) => g.some((v) => v !== 0)), "zero gradients");
      plain.grads.forEach((g, i) => assertClose(ckpt.grads[i], g, 1e-6, `gradient ${i}`));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
