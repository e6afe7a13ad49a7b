import { getGpu } from "../lib/gpu/mod.ts";
import { Tensor } from "../lib/tensor/mod.ts";
import { Rng } from "../lib/tensor/reference/random.ts";
import { AdamW } from "../lib/train/optim.ts";
import { MULTI_SLOTS } from "../kernels/adamw.ts";
import { adamwReference, type AdamWRefState, clipReference } from "../lib/train/reference.ts";
import { lrAt, lrFactor } from "../lib/train/schedule.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { loadModel } from "../lib/models/load.ts";
import { prepareMethod } from "../lib/cli/method.ts";
import { fixtureModel, methodOptions } from "./model_helpers.ts";

function refState(p: Float32Array): AdamWRefState {
  return { p: Float64Array.from(p), m: new Float64Array(p.length), v: new Float64Array(p.length), steps: 0 };
}

Deno.test("AdamW: two groups, scheduled LR via a per-step buffer, skipped parameters keep their own step", async () => {
  const gpu = await getGpu();
  const rng = new Rng(60);
  const sizes = [7, 1, 300, 33];
  const init = sizes.map((n) => Float32Array.from(rng.normals(n)));
  const params = init.map((d, i) => Tensor.from(gpu, d, [sizes[i]], { requiresGrad: true }));
  const opt = new AdamW(gpu, [
    { params: params.slice(0, 2), weightDecay: 0.1 },
    { params: params.slice(2), lr: 3e-2, weightDecay: 0 },
  ], { lr: 1e-2, betas: [0.8, 0.95], eps: 1e-6 });
  const refs = init.map(refState);
  const sched = { warmupSteps: 2, totalSteps: 6 };
  let pipelines = 0;
  for (let step = 0; step < 5; step++) {
    const factor = lrFactor(step + 1, sched);
    const submits = gpu.submits;
    params.forEach((p, i) => {
      if (i === 1 && step === 2) return; // no gradient this step: skipped
      const g = Float32Array.from(rng.normals(sizes[i]));
      p.grad = Tensor.from(gpu, g, p.shape);
      const [lr, wd] = i < 2 ? [1e-2, 0.1] : [3e-2, 0];
      adamwReference(refs[i], g, lr * factor, wd, [0.8, 0.95], 1e-6);
    });
    opt.step(factor);
    opt.zeroGrad();
    assertEquals(gpu.submits, submits, "step() submits nothing");
    // (step 2 skips a parameter: a dispatch of three parameters, compiled once)
    if (step === 2) pipelines = gpu.pipelines.size;
    if (step > 2) assertEquals(gpu.pipelines.size, pipelines, "a new learning rate compiles nothing");
  }
  for (let i = 0; i < params.length; i++) {
    assertClose(await params[i].toArray(), refs[i].p, 2e-6, `param ${i}`);
  }
  assertThrows(() => new AdamW(gpu, [params[0], params[0]], { lr: 1 }), "twice");
  assertThrows(() => new AdamW(gpu, [Tensor.zeros(gpu, [2])], { lr: 1 }), "requiresGrad");
});

Deno.test("gradient clipping by global norm: computed on the GPU, no readback, applied by AdamW", async () => {
  const gpu = await getGpu();
  const rng = new Rng(61);
  const sizes = [5000, 3, 129];
  const init = sizes.map((n) => Float32Array.from(rng.normals(n)));
  const params = init.map((d, i) => Tensor.from(gpu, d, [sizes[i]], { requiresGrad: true }));
  const opt = new AdamW(gpu, params, { lr: 0.05, weightDecay: 0.01, maxGradNorm: 1.5 });
  const refs = init.map(refState);
  for (let step = 0; step < 3; step++) {
    const grads = sizes.map((n) => Float32Array.from(rng.normals(n, step === 1 ? 1e-4 : 1)));
    params.forEach((p, i) => (p.grad = Tensor.from(gpu, grads[i], p.shape)));
    const { norm, scale } = clipReference(grads, 1.5);
    refs.forEach((r, i) => adamwReference(r, grads[i].map((g) => g * scale), 0.05, 0.01));
    const submits = gpu.submits;
    opt.step();
    assertEquals(gpu.submits, submits, "clipping reads nothing back");
    const [gotNorm, gotScale] = await opt.gradNorm.toArray();
    assertClose([gotNorm, gotScale], [norm, scale], 1e-5, `norm and scale at step ${step}`);
    if (step === 1) assertEquals(gotScale, 1, "small gradients are not scaled");
    opt.zeroGrad();
  }
  for (let i = 0; i < params.length; i++) {
    assertClose(await params[i].toArray(), refs[i].p, 2e-6, `param ${i}`);
  }
});

Deno.test("schedules follow Hugging Face's warmup + linear / cosine / constant", () => {
  const o = { warmupSteps: 10, totalSteps: 110 };
  assertEquals(lrFactor(0, o), 0);
  assertEquals(lrFactor(5, o), 0.5);
  assertEquals(lrFactor(10, o), 1);
  assertEquals(lrFactor(60, o), 0.5);
  assertEquals(lrFactor(110, o), 0);
  assertEquals(lrFactor(200, o), 0);
  const c = { ...o, decay: "cosine" as const };
  assertEquals(lrFactor(10, c), 1);
  assert(Math.abs(lrFactor(60, c) - 0.5) < 1e-12);
  assert(Math.abs(lrFactor(110, c)) < 1e-12);
  assert(Math.abs(lrFactor(35, c) - 0.5 * (1 + Math.cos(Math.PI * 0.25))) < 1e-12);
  assertEquals(lrFactor(50, { ...o, decay: "constant" }), 1);
  assertEquals(lrAt(5, 2e-4, o), 1e-4);
  assertEquals(lrFactor(0, { warmupSteps: 0, totalSteps: 4 }), 1);
});

Deno.test("cosine cycles: transformers' get_cosine_schedule_with_warmup with num_cycles", () => {
  // transformers' lambda, evaluated in Python for warmup 2 of 10 steps:
  // max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * (step - 2) / max(1, 10 - 2))))
  const expected: Record<number, number[]> = {
    1: [
      0,
      0.5,
      1,
      0.8535533905932737,
      0.5,
      0.14644660940672627,
      0,
      0.14644660940672616,
      0.5,
      0.8535533905932737,
      1,
    ],
    1.5: [
      0,
      0.5,
      1,
      0.6913417161825449,
      0.14644660940672627,
      0.038060233744356575,
      0.5,
      0.9619397662556433,
      0.8535533905932738,
      0.3086582838174551,
      0,
    ],
  };
  for (const [cycles, factors] of Object.entries(expected)) {
    const o = { warmupSteps: 2, totalSteps: 10, decay: "cosine" as const, cycles: Number(cycles) };
    assertClose(factors.map((_, step) => lrFactor(step, o)), factors, 1e-12, `cycles ${cycles}`);
  }
});

Deno.test("AdamW and clipping over more parameters than one dispatch takes: several a dispatch", async () => {
  const gpu = await getGpu();
  const rng = new Rng(62);
  // 19 parameters: past two chunks of MULTI_SLOTS, sizes around a workgroup's 256 and a 2048 partial group
  const sizes = [1, 2, 255, 256, 257, 1000, 3, 5000, 7, 513, 17000, 31, 64, 65, 129, 4, 300, 2049, 9];
  const init = sizes.map((n) => Float32Array.from(rng.normals(n)));
  const params = init.map((d, i) => Tensor.from(gpu, d, [sizes[i]], { requiresGrad: true }));
  const opt = new AdamW(gpu, [
    { params: params.slice(0, 9), weightDecay: 0.1 },
    { params: params.slice(9), lr: 3e-3 },
  ], { lr: 1e-2, maxGradNorm: 2 });
  const refs = init.map(refState);
  for (let step = 0; step < 3; step++) {
    const grads = sizes.map((n) => Float32Array.from(rng.normals(n)));
    params.forEach((p, i) => (p.grad = Tensor.from(gpu, grads[i], p.shape)));
    const { scale } = clipReference(grads, 2);
    refs.forEach((r, i) =>
      adamwReference(r, grads[i].map((g) => g * scale), i < 9 ? 1e-2 : 3e-3, i < 9 ? 0.1 : 0)
    );
    const before = gpu.stream.dispatches;
    opt.step();
    const most = Math.min(MULTI_SLOTS, Math.floor((gpu.limits.maxStorageBuffersPerShaderStage - 2) / 4));
    const sums = Math.ceil(19 / Math.min(MULTI_SLOTS, gpu.limits.maxStorageBuffersPerShaderStage - 1));
    assertEquals(gpu.stream.dispatches - before, Math.ceil(19 / most) + sums + 1, "dispatches a step");
    opt.zeroGrad();
  }
  for (let i = 0; i < params.length; i++) {
    assertClose(await params[i].toArray(), refs[i].p, 2e-6, `param ${i}`);
  }
});

Deno.test("weight decay leaves every bias and norm out, the head's too, as transformers' Trainer does", async () => {
  const gpu = await getGpu();
  for (const method of ["full", "head", "lora"] as const) {
    const model = await loadModel(gpu, fixtureModel("roberta"), { task: "seq-cls" });
    try {
      const prepared = await prepareMethod(model, methodOptions(method, "seq-cls", { weightDecay: 0.1 }));
      const decayOf = new Map(prepared.groups.flatMap((g) => g.params.map((p) => [p.name, g.weightDecay])));
      for (const [name, decay] of decayOf) {
        const vector = name.endsWith(".bias") || /LayerNorm/.test(name);
        if (vector) assertEquals(decay, 0, `${method}: ${name}`);
      }
      assertEquals(decayOf.get("classifier.out_proj.bias"), 0, method);
      assertEquals(decayOf.get("classifier.out_proj.weight"), 0.1, method);
    } finally {
      model.dispose();
    }
  }
});
