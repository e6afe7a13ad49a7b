import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import { Rng } from "../lib/tensor/reference/random.ts";
import { AdamW } from "../lib/train/optim.ts";
import { lrFactor } from "../lib/train/schedule.ts";
import { assert, assertEquals } from "./assert.ts";

function param(gpu: Gpu, rng: Rng, shape: number[], std: number): T.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return T.Tensor.from(gpu, Float32Array.from(rng.normals(n, std)), shape, { requiresGrad: true });
}

/** A 2-layer MLP classifier on fixed random data. */
function mlp(gpu: Gpu, seed: number) {
  const rng = new Rng(seed);
  const [n, din, hidden, classes] = [16, 8, 32, 4];
  const w1 = param(gpu, rng, [hidden, din], 0.3), b1 = param(gpu, rng, [hidden], 0.01);
  const w2 = param(gpu, rng, [classes, hidden], 0.3), b2 = param(gpu, rng, [classes], 0.01);
  const x = T.Tensor.from(gpu, Float32Array.from(rng.normals(n * din)), [n, din]);
  const y = T.Tensor.from(gpu, Int32Array.from({ length: n }, () => rng.int(classes)), [n]);
  const loss = () => T.crossEntropy(T.linear(T.gelu(T.linear(x, w1, b1)), w2, b2), y);
  return { params: [w1, b1, w2, b2], loss };
}

Deno.test("a 2-layer MLP trains: loss falls", async () => {
  const gpu = await getGpu();
  const model = mlp(gpu, 70);
  const opt = new AdamW(gpu, model.params, { lr: 0.03, maxGradNorm: 1 });
  const losses: number[] = [];
  for (let step = 0; step < 40; step++) {
    const loss = T.tidy(() => {
      const l = model.loss();
      l.backward();
      opt.step();
      opt.zeroGrad();
      return l;
    });
    if (step % 13 === 0 || step === 39) losses.push(await loss.item());
    loss.dispose();
  }
  assert(losses.every((l, i) => i === 0 || l < losses[i - 1]), `losses ${losses}`);
  assert(losses[losses.length - 1] < 0.3 * losses[0], `losses ${losses}`);
});

Deno.test("a tiny pre-norm decoder block (embeddings, RoPE, GQA causal attention, SiLU MLP) trains", async () => {
  const gpu = await getGpu();
  const rng = new Rng(71);
  const [vocab, d, heads, kvHeads, b, t] = [13, 16, 4, 2, 2, 6];
  const hd = d / heads;
  const p = {
    emb: param(gpu, rng, [vocab, d], 0.5),
    ln1: T.Tensor.full(gpu, [d], 1, { requiresGrad: true }),
    wq: param(gpu, rng, [d, d], 0.25),
    wkv: param(gpu, rng, [2 * kvHeads * hd, d], 0.25),
    wo: param(gpu, rng, [d, d], 0.25),
    ln2: T.Tensor.full(gpu, [d], 1, { requiresGrad: true }),
    bias2: T.Tensor.zeros(gpu, [d], { requiresGrad: true }),
    up: param(gpu, rng, [2 * d, d], 0.25),
    down: param(gpu, rng, [d, d], 0.25),
    head: param(gpu, rng, [vocab, d], 0.25),
  };
  const ids = Int32Array.from([1, 5, 2, 7, 3, 0, 4, 4, 9, 11, 6, 0]);
  const targets = Int32Array.from([5, 2, 7, 3, -100, -100, 4, 9, 11, 6, -100, -100]);
  const mask = T.Tensor.from(gpu, Int32Array.from([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0]), [b, t]);
  const tids = T.Tensor.from(gpu, ids, [b, t]), ttargets = T.Tensor.from(gpu, targets, [b, t]);
  const tables = T.ropeTables(gpu, { rotaryDim: hd, theta: 10000, length: t });
  const heads4 = (x: T.Tensor, h: number) => T.permute(T.reshape(x, [b, t, h, hd]), [0, 2, 1, 3]);
  const forward = (step: number, drop: number) => {
    const x = T.embedding(p.emb, tids);
    const h = T.rmsNorm(x, p.ln1);
    const q = T.rope(heads4(T.linear(h, p.wq), heads), tables);
    const [k, v] = T.split(T.linear(h, p.wkv), [kvHeads * hd, kvHeads * hd], -1);
    const att = T.attention(q, T.rope(heads4(k, kvHeads), tables), heads4(v, kvHeads), {
      causal: true,
      mask,
    });
    const merged = T.reshape(T.permute(att, [0, 2, 1, 3]), [b, t, d]);
    const x2 = T.add(x, T.dropout(T.linear(merged, p.wo), drop, { seed: 5, step }));
    const [gate, up] = T.split(T.linear(T.layerNorm(x2, p.ln2, p.bias2), p.up), [d, d], -1);
    const x3 = T.add(x2, T.linear(T.mul(T.silu(gate), up), p.down));
    return T.crossEntropy(T.linear(x3, p.head), ttargets);
  };
  const opt = new AdamW(gpu, [
    { params: [p.emb, p.wq, p.wkv, p.wo, p.up, p.down, p.head], weightDecay: 0.01 },
    { params: [p.ln1, p.ln2, p.bias2], weightDecay: 0 },
  ], { lr: 0.02, maxGradNorm: 1 });
  const losses: number[] = [];
  const steps = 60;
  for (let step = 0; step < steps; step++) {
    if (step % 20 === 0) losses.push(await T.tidy(() => T.noGrad(() => forward(step, 0))).item());
    T.tidy(() => {
      const l = forward(step, 0.1);
      l.backward();
      opt.step(lrFactor(step, { warmupSteps: 5, totalSteps: steps, decay: "cosine" }));
      opt.zeroGrad();
    });
  }
  losses.push(await T.tidy(() => T.noGrad(() => forward(steps, 0))).item());
  assert(losses.every((l, i) => i === 0 || l < losses[i - 1]), `evaluation losses ${losses}`);
  assert(losses[losses.length - 1] < 0.2 * losses[0], `evaluation losses ${losses}`);
});

Deno.test("GPU memory and bind groups stay flat over 1000 training steps (flush per step, loss read every 50)", async () => {
  const gpu = await getGpu();
  const model = mlp(gpu, 72);
  const opt = new AdamW(gpu, model.params, { lr: 0.01, maxGradNorm: 1 });
  const allocated: number[] = [], inUse: number[] = [], bindGroups: number[] = [];
  let pending: Promise<Float32Array> | null = null;
  let last = Infinity;
  for (let step = 1; step <= 1000; step++) {
    T.tidy(() => {
      const loss = model.loss();
      loss.backward();
      opt.step();
      opt.zeroGrad();
      if (step % 50 === 0) pending = loss.readLater();
    });
    gpu.stream.flush();
    if (pending) {
      last = (await pending)[0];
      pending = null;
      allocated.push(gpu.pool.stats().allocated);
      inUse.push(gpu.pool.stats().inUse);
      bindGroups.push(gpu.stream.bindGroupsCreated);
    }
  }
  assert(Number.isFinite(last) && last < 0.5, `final loss ${last}`);
  assert(allocated.slice(2).every((a) => a === allocated[1]), `allocated bytes drift: ${allocated}`);
  assert(inUse.every((u) => u === inUse[0]), `in-use bytes drift: ${inUse}`);
  assertEquals(inUse[0] < allocated[1], true);
  // the pool hands a repeated step the same buffers, so its bind groups come from the cache
  assert(bindGroups.slice(2).every((b) => b === bindGroups[1]), `bind groups created: ${bindGroups}`);
});
