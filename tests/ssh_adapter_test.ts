import { reloadedLogits } from "./model_helpers.ts";
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  denseReference,
  FIXTURES,
  loadableFamilies,
  Prng,
  randomLinear,
  randomPositions,
  runLayer,
} from "./peft_helpers.ts";
import { getGpu, type Gpu, upload } from "../lib/gpu/mod.ts";
import { loadModel } from "../lib/models/load.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { attachAdapter, loadAdapterInto } from "../lib/peft/apply.ts";
import { sshConfig } from "../lib/peft/config.ts";
import { loadAdapter, saveAdapter, type SSHAdapter } from "../lib/peft/files.ts";
import { AdapterFileError } from "../lib/peft/check_adapter.ts";
import {
  createSshLayers,
  derivedSeed,
  initCoefficients,
  selectGlobalPositions,
  selectLayerPositions,
  sumF32,
} from "../lib/peft/ssh.ts";
import { SpectralLayer } from "../lib/peft/spectral_layer.ts";
import type { Linear } from "../lib/nn/linear.ts";
import { coefGradReference, deltaWReference } from "../lib/spectral/adapter_op.ts";
import {
  energyReference,
  positionSpace,
  roundHalfEven,
  sampleRemainder,
  selectPositions,
  topkReference,
} from "../lib/spectral/select.ts";
import type { Transform } from "../lib/spectral/transforms.ts";
import { noGrad, sum, Tensor, tidy } from "../lib/tensor/mod.ts";
import { AdamW } from "../lib/train/optim.ts";

const TRANSFORMS: Transform[] = ["dht", "dht2d", "dft"];
const TOL = 1e-5;

Deno.test("SSH layer: forward, dx and coefficient gradients match the dense float64 layer, on both routes", async () => {
  const gpu = await getGpu();
  const shapes: [number, number, "out_in" | "in_out", boolean][] = [
    [7, 12, "out_in", false],
    [13, 5, "in_out", false],
    [1, 9, "out_in", false],
    [6, 10, "out_in", true], // an f16 weight: folded into an f32 copy
  ];
  const routes = new Set<string>();
  for (const [m, n, layout, f16] of shapes) {
    for (const transform of TRANSFORMS) {
      // 5 tokens take the spectral route for most shapes, 61 fold ΔW into the weight
      for (const tokens of [5, 61]) {
        const p = new Prng(m * 100 + n + tokens);
        const { lin, w, b } = randomLinear(gpu, p, m, n, layout, { f16 });
        const positions = randomPositions(p, m, n, Math.min(6, m * n));
        const coef = p.normals(positions.length / 2);
        const layer = new SpectralLayer(gpu, "ssh", {
          outFeatures: m,
          inFeatures: n,
          positions,
          transform,
          alpha: 17,
          coef,
        });
        lin.adapter = layer;
        const route = layer.route(lin, tokens);
        routes.add(route);
        const x = p.normals(tokens * n), r = p.normals(tokens * m);
        const got = await runLayer(gpu, lin, x, r, tokens);
        const dw = deltaWReference(positions, coef, m, n, transform, 17);
        const want = denseReference(w, dw, b, x, r, tokens, m, n);
        const what = `${transform} ${m}×${n} ${layout}${f16 ? " f16" : ""} T=${tokens} (${route})`;
        assertClose(got.y, want.y, TOL, `y ${what}`);
        assertClose(got.dx, want.dx, TOL, `dx ${what}`);
        const dc = coefGradReference(positions, want.g, m, n, transform, 17);
        assertClose(await layer.coef.grad!.toArray(), dc, TOL, `dcoef ${what}`);
        assert(
          lin.weight.grad === null && lin.weight.requiresGrad === false,
          "the frozen weight gets no gradient",
        );
        layer.dispose();
        lin.weight.dispose();
        lin.bias!.dispose();
      }
    }
  }
  assertEquals([...routes].sort(), ["fold", "spectral"], "both routes were taken");
});

/** An SSH layer of m×n with `count` random positions (dht, α 300), for tests that only route or time. */
function plainSshLayer(gpu: Gpu, p: Prng, m: number, n: number, count: number): SpectralLayer {
  return new SpectralLayer(gpu, "ssh", {
    outFeatures: m,
    inFeatures: n,
    positions: randomPositions(p, m, n, count),
    transform: "dht",
    alpha: 300,
  });
}

Deno.test("SSH layer route: fold only small frozen layers against many tokens", async () => {
  const gpu = await getGpu();
  const p = new Prng(5);
  const { lin } = randomLinear(gpu, p, 768, 768);
  const layer = plainSshLayer(gpu, p, 768, 768, 10);
  assertEquals(layer.route(lin, 4096), "fold"); // RoBERTa-base, batch 32 × 128
  assertEquals(layer.route(lin, 256), "spectral"); // 768² > 0.5 · 256 · 1536
  lin.weight.requiresGrad = true;
  assertEquals(layer.route(lin, 4096), "spectral", "a trained weight is never folded");
  lin.weight.requiresGrad = false;
  const big = { weight: { requiresGrad: false }, bias: null } as unknown as Linear;
  const wide = plainSshLayer(gpu, p, 4096, 4096, 10);
  assertEquals(wide.route(big, 1 << 20), "spectral", "a 4096² weight copy is too large to fold");
  for (const x of [layer, wide, lin.weight, lin.bias!]) x.dispose();
});

Deno.test("SSH layer: a retained graph backpropagates twice; dropped graphs give x̂ back", async () => {
  const gpu = await getGpu();
  const p = new Prng(3);
  const { lin } = randomLinear(gpu, p, 6, 10);
  const layer = new SpectralLayer(gpu, "ssh", {
    outFeatures: 6,
    inFeatures: 10,
    positions: randomPositions(p, 6, 10, 5),
    transform: "dht",
    alpha: 4,
    coef: p.normals(5),
  });
  lin.adapter = layer;
  const x = Tensor.from(gpu, p.normals(30), [3, 10]);
  const loss = tidy(() => sum(lin.forward(x)));
  loss.backward(undefined, { retainGraph: true });
  const once = Float32Array.from(await layer.coef.grad!.toArray());
  loss.backward();
  assertClose(await layer.coef.grad!.toArray(), once.map((v) => 2 * v), 1e-6, "two backwards add up");
  loss.dispose();
  const before = gpu.pool.stats().inUse;
  for (let i = 0; i < 3; i++) tidy(() => sum(lin.forward(x))).dispose(); // graphs dropped, no backward
  noGrad(() => tidy(() => lin.forward(x))).dispose();
  await gpu.stream.read(layer.coef.buffer, 4);
  assertEquals(gpu.pool.stats().inUse, before, "bytes in use after dropped graphs");
  layer.dispose();
  x.dispose();
});

Deno.test("SSH selection 'layer': the energy positions of the frozen weight, then the seeded rest", async () => {
  const gpu = await getGpu();
  for (const layout of ["out_in", "in_out"] as const) {
    for (const transform of TRANSFORMS) {
      const p = new Prng(11);
      const m = 9, n = 7, count = 10, ratio = 0.6, seed = 5;
      const { lin, w } = randomLinear(gpu, p, m, n, layout, { f16: true });
      const got = await selectLayerPositions(gpu, lin, { n: count, energyRatio: ratio, transform, seed });
      const top = topkReference(energyReference(transform, w, m, n), 6);
      const rest = sampleRemainder(top, m * n, count - 6, seed);
      const flats = [...top, ...rest];
      const gotFlat = Array.from({ length: count }, (_, k) => got[2 * k] * n + got[2 * k + 1]);
      if (transform !== "dft") {
        assertEquals(gotFlat, flats, `${transform} ${layout}`);
      } else {
        // dft ranks and draws over one representative (the smaller flat index) per mirror class
        const reps = positionSpace("dft", m, n);
        const e = energyReference(transform, w, m, n);
        const topReps = topkReference(Array.from({ length: reps.size }, (_, r) => e[reps.flat(r)]), 6);
        const restReps = sampleRemainder(topReps, reps.size, count - 6, seed);
        assertEquals(gotFlat, [...topReps, ...restReps].map((r) => reps.flat(r)), `dft ${layout}`);
      }
      lin.weight.dispose();
    }
  }
});

Deno.test("SSH selection 'layer' over many layers ranks several at once, each as alone", async () => {
  const gpu = await getGpu();
  const p = new Prng(12);
  const sizes = [[9, 7], [5, 11], [13, 3], [8, 8], [7, 9], [6, 5], [11, 4], [3, 13], [10, 10], [4, 7]];
  const made = sizes.map(([m, n], i) =>
    randomLinear(gpu, p, m, n, i % 2 ? "in_out" : "out_in", { f16: i % 3 === 0, path: `l${i}` })
  );
  const linears = made.map((x) => x.lin);
  const config = sshConfig({ n: 6, energyRatio: 0.5, selection: "layer", seed: 17 });
  // the readbacks waited on at once
  const read = gpu.stream.read.bind(gpu.stream);
  let waiting = 0, most = 0;
  gpu.stream.read = async (...args: Parameters<typeof read>) => {
    most = Math.max(most, ++waiting);
    try {
      return await read(...args);
    } finally {
      waiting--;
    }
  };
  let layers;
  try {
    layers = await createSshLayers(gpu, linears, config);
  } finally {
    gpu.stream.read = read;
  }
  assert(most > 1, `readbacks overlap (at most ${most} waited on at once)`);
  for (const [l, lin] of linears.entries()) {
    const alone = await selectLayerPositions(gpu, lin, {
      n: 6,
      energyRatio: 0.5,
      transform: config.transform,
      seed: derivedSeed(17, 2 * l),
    });
    assertEquals([...layers.get(lin.path)!.positions], [...alone], `layer ${l}`);
  }
  for (const l of layers.values()) l?.dispose();
  for (const { lin } of made) lin.weight.dispose();
});

Deno.test("SSH selection 'global': one budget ranked by normalised energy (documented algorithm)", async () => {
  const gpu = await getGpu();
  const p = new Prng(21);
  const sizes: [number, number][] = [[6, 5], [4, 9], [7, 3]];
  const layers = sizes.map(([m, n], i) =>
    randomLinear(gpu, p, m, n, i === 1 ? "in_out" : "out_in", { path: `l${i}` })
  );
  const n = 5, ratio = 0.5, seed = 9;
  for (const transform of TRANSFORMS) {
    const got = await selectGlobalPositions(gpu, layers.map((l) => l.lin), {
      n,
      energyRatio: ratio,
      transform,
      seed,
    });
    const ranked: { l: number; f: number; e: number }[] = [];
    layers.forEach(({ w }, l) => {
      const [m, nn] = sizes[l];
      const e = energyReference(transform, w, m, nn);
      const total = e.reduce((a, b) => a + b, 0);
      e.forEach((v, f) => ranked.push({ l, f, e: v / total }));
    });
    ranked.sort((a, b) => b.e - a.e || a.l - b.l || a.f - b.f);
    const nEnergy = roundHalfEven(ratio * n * 3);
    const top = ranked.slice(0, nEnergy);
    const offsets = [0, 30, 66];
    const rest = sampleRemainder(top.map((t) => offsets[t.l] + t.f), 87, 15 - nEnergy, seed);
    const want: number[][] = [[], [], []];
    for (const t of top) want[t.l].push(t.f);
    for (const g of rest) {
      const l = g >= 66 ? 2 : g >= 30 ? 1 : 0;
      want[l].push(g - offsets[l]);
    }
    assertEquals(got.reduce((s, a) => s + a.length / 2, 0), 15, `${transform}: total n·L`);
    if (transform === "dft") continue; // ranked over mirror classes: tests/select_dft_global_test.ts
    got.forEach((pos, l) => {
      const nn = sizes[l][1];
      const flats = Array.from({ length: pos.length / 2 }, (_, k) => pos[2 * k] * nn + pos[2 * k + 1]);
      assertEquals(flats, want[l], `${transform} layer ${l}`);
    });
  }
  await assertRejects(
    () =>
      selectGlobalPositions(gpu, layers.map((l) => l.lin), {
        n: 40,
        energyRatio: 0.5,
        transform: "dht",
        seed: 0,
      }),
    RangeError,
    "n·L",
  );
  for (const l of layers) l.lin.weight.dispose();
});

Deno.test("SSH init and seeds: normal draws per layer, zeros, derived seeds", () => {
  assertEquals(Array.from(initCoefficients("zeros", 3, 1)), [0, 0, 0]);
  assertEquals(Array.from(initCoefficients("normal", 4, 7)), Array.from(new Prng(7).normals(4)));
  assertEquals(derivedSeed(10, 3), 13);
  assertEquals(derivedSeed(2 ** 53 - 1, 2), 1);
});

Deno.test("SSH layers: n > M·N and mismatched modules are clear errors", async () => {
  const gpu = await getGpu();
  const p = new Prng(1);
  const { lin } = randomLinear(gpu, p, 3, 4, "out_in", { path: "small" });
  await assertRejects(
    () => createSshLayers(gpu, [lin], sshConfig({ n: 13 })),
    RangeError,
    "small: n = 13 positions do not fit its 3×4 spectrum",
  );
  const layers = await createSshLayers(gpu, [lin], sshConfig({ n: 12, init: "zeros" }));
  const layer = layers.get("small")!;
  assertEquals(layer.count, 12);
  assertEquals(Array.from(await layer.coefficients()), new Array(12).fill(0));
  assertThrows(
    () =>
      new SpectralLayer(gpu, "ssh", {
        outFeatures: 3,
        inFeatures: 4,
        positions: new Int32Array([0, 0, 0, 0]),
        transform: "dht",
        alpha: 1,
      }),
    "appears twice",
  );
  layer.dispose();
  lin.weight.dispose();
});

Deno.test("attachAdapter refuses to leave a head new to the checkpoint frozen", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  // the GPT-2 fixture is a causal LM: its seq-cls head ("score") is initialised at load
  const model = await loadModel(gpu, `${FIXTURES}models/gpt2`, { task: "seq-cls", numLabels: 2 });
  try {
    assertEquals(model.initialised, ["score.weight"]);
    await assertRejects(
      () => attachAdapter(model, sshConfig({ n: 8 })),
      Error,
      `"score.weight" is new (initialised by loadModel: the checkpoint has no seq-cls head), but the ` +
        `adapter config does not train it`,
    );
    const peft = await attachAdapter(model, sshConfig({ n: 8, taskType: "SEQ_CLS" }));
    assertEquals([...peft.saved.keys()], ["score.weight"]);
    peft.detach();
  } finally {
    model.dispose();
  }
});

for (const family of ["gpt2", "llama"].filter((f) => loadableFamilies().includes(f))) {
  Deno.test(`SSH on ${family}: train step, save, reload into a fresh model gives the same logits`, async () => {
    const gpu = await getGpu();
    const dir = `${FIXTURES}models/${family}`;
    const ref = await openSafetensors(`${dir}/reference.safetensors`);
    const model = await loadModel(gpu, dir);
    const peft = await attachAdapter(model, sshConfig({ n: 20, alpha: 20, seed: 3 }));
    const targets = [...peft.layers.keys()];
    assert(targets.length > 0 && targets.every((t) => /c_attn|q_proj|v_proj/.test(t)), `targets ${targets}`);
    assertEquals(peft.trainableCount(), 20 * targets.length);
    const batch = await referenceBatch(gpu, ref);
    const opt = new AdamW(gpu, peft.parameters(), { lr: 0.05 });
    const losses: number[] = [];
    for (let step = 0; step < 3; step++) {
      const loss = tidy(() => model.forward(batch).loss!);
      loss.backward();
      losses.push(await loss.item());
      opt.step(1);
      opt.zeroGrad();
      loss.dispose();
    }
    assert(losses[2] < losses[0], `loss goes down: ${losses}`);
    for (const [k, t] of model.parameters) assert(t.grad === null, `${k} got a gradient`);
    const logits = await noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
    const tmp = await Deno.makeTempDir();
    try {
      await peft.save(tmp);
      const saved = await loadAdapter(tmp);
      assertEquals(saved.config.peftType, "SSH");
      const again = await reloadedLogits(gpu, dir, tmp, batch);
      assertEquals(Array.from(again), Array.from(logits), "reloaded logits, bit for bit");
      // an adapter made for another model
      if (family === "gpt2" && loadableFamilies().includes("llama")) {
        const other = await loadModel(gpu, `${FIXTURES}models/llama`);
        await assertRejects(() => loadAdapterInto(other, tmp), AdapterFileError, "another model");
        other.dispose();
      }
      // a shape mismatch
      const a = await loadAdapter(tmp);
      const [first] = a.modules.keys();
      const mod = a.modules.get(first)!;
      mod.inFeatures += 1;
      const bad = `${tmp}-bad`;
      await saveAdapter(bad, a);
      const other = await loadModel(gpu, dir);
      await assertRejects(() => loadAdapterInto(other, bad), AdapterFileError, "was made for a");
      other.dispose();
      await Deno.remove(bad, { recursive: true });
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
    peft.detach();
    model.dispose();
  });
}

Deno.test("SSH 'global' selection on a model saves every target, some possibly empty", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/gpt2`;
  const model = await loadModel(gpu, dir);
  const config = sshConfig({
    n: 16,
    selection: "global",
    targetModules: ["c_attn", "c_proj"],
    energyRatio: 1,
  });
  const peft = await attachAdapter(model, config);
  const adapter = await peft.toAdapter() as SSHAdapter;
  const counts = [...adapter.modules.values()].map((m) => m.spectrum.length);
  assertEquals(counts.reduce((a, b) => a + b, 0), 16 * adapter.modules.size);
  const tmp = await Deno.makeTempDir();
  await peft.save(tmp);
  const fresh = await loadModel(gpu, dir);
  const again = await loadAdapterInto(fresh, tmp);
  assertEquals(again.layers.size + again.emptyLayers.size, adapter.modules.size);
  await Deno.remove(tmp, { recursive: true });
  peft.detach();
  again.detach();
  model.dispose();
  fresh.dispose();
});

Deno.test("selectPositions agrees with selectLayerPositions on an f32 weight", async () => {
  const gpu = await getGpu();
  const p = new Prng(8);
  const { lin } = randomLinear(gpu, p, 5, 8, "in_out");
  const a = await selectLayerPositions(gpu, lin, { n: 7, energyRatio: 0.7, transform: "dht", seed: 2 });
  const b = await selectPositions(gpu, lin.weight.buffer, 5, 8, {
    n: 7,
    energyRatio: 0.7,
    transform: "dht",
    seed: 2,
    transposed: true,
  });
  assertEquals(Array.from(a), Array.from(b));
  lin.weight.dispose();
});

Deno.test("SSH 'global': a module with no coefficients saves, loads and keeps no adapter", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/gpt2`);
  const [a, b] = ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"];
  const modules = new Map([
    [a, {
      outFeatures: 192,
      inFeatures: 64,
      spectrum: Float32Array.of(1, 2, 3, 4),
      indices: Int32Array.of(0, 0, 1, 1, 2, 2, 3, 3),
    }],
    [b, { outFeatures: 192, inFeatures: 64, spectrum: new Float32Array(0), indices: new Int32Array(0) }],
  ]);
  const config = sshConfig({ n: 2, selection: "global", targetModules: [a, b] });
  const tmp = await Deno.makeTempDir();
  try {
    await saveAdapter(tmp, { config, modules, saved: new Map() });
    const peft = await loadAdapterInto(model, tmp);
    assertEquals([...peft.layers.keys()], [a]);
    assertEquals([...peft.emptyLayers.keys()], [b]);
    assert(model.linears.get(b)!.adapter === null, "no adapter on the empty layer");
    await peft.save(`${tmp}/again`);
    const again = await loadAdapter(`${tmp}/again`) as SSHAdapter;
    assertEquals(again.modules.get(b)!.spectrum.length, 0);
    assertEquals(again.config.inferenceMode, true);
    peft.detach();
  } finally {
    await Deno.remove(tmp, { recursive: true });
    model.dispose();
  }
});

Deno.test("sumF32 (block sums on the GPU, float64 across blocks) on awkward sizes", async () => {
  const gpu = await getGpu();
  for (const size of [1, 257, 4096 * 3 + 7]) {
    const values = Float32Array.from(new Prng(size).normals(size), Math.abs);
    const buf = upload(gpu, values);
    const want = values.reduce((s, v) => s + v, 0);
    const got = await sumF32(gpu, buf, size);
    assert(Math.abs(got - want) <= 1e-6 * want, `size ${size}: ${got} vs ${want}`);
    gpu.pool.release(buf);
  }
});
