import { reloadedLogits } from "./model_helpers.ts";
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { denseReference, FIXTURES, loadableFamilies, Prng, randomLinear, runLayer } from "./peft_helpers.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { attachAdapter, loadAdapterInto } from "../lib/peft/apply.ts";
import { loraConfig } from "../lib/peft/config.ts";
import { loadAdapter, type LoraAdapter } from "../lib/peft/files.ts";
import { initLoraModule, LoraLayer, loraScaling } from "../lib/peft/lora.ts";
import { readDeltaWeight } from "../lib/peft/merge.ts";
import { noGrad, sum, Tensor, tidy } from "../lib/tensor/mod.ts";
import { AdamW } from "../lib/train/optim.ts";
import { peftAdapterParity, rowPasses } from "../tools/adapter_parity.ts";

const TOL = 1e-5;

/** ΔW = s·B·A (M×N, float64). */
function loraDelta(a: ArrayLike<number>, b: ArrayLike<number>, m: number, n: number, r: number, s: number) {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += b[i * r + k] * a[k * n + j];
      out[i * n + j] = s * acc;
    }
  }
  return out;
}

Deno.test("LoRA layer: forward, dx, dA, dB and ΔW match the float64 layer (both storages)", async () => {
  const gpu = await getGpu();
  for (
    const [m, n, r, layout] of [[7, 12, 3, "out_in"], [13, 5, 2, "in_out"], [1, 9, 1, "out_in"]] as const
  ) {
    const p = new Prng(m + n + r);
    const { lin, w, b } = randomLinear(gpu, p, m, n, layout);
    const a = p.normals(r * n), bb = p.normals(m * r);
    const s = 8 / r;
    const layer = new LoraLayer(gpu, { module: { outFeatures: m, inFeatures: n, r, a, b: bb }, scaling: s });
    lin.adapter = layer;
    const tokens = 4, x = p.normals(tokens * n), rr = p.normals(tokens * m);
    const got = await runLayer(gpu, lin, x, rr, tokens);
    const dw = loraDelta(a, bb, m, n, r, s);
    const want = denseReference(w, dw, b, x, rr, tokens, m, n);
    const what = `${m}×${n} r=${r} ${layout}`;
    assertClose(got.y, want.y, TOL, `y ${what}`);
    assertClose(got.dx, want.dx, TOL, `dx ${what}`);
    // dA = s·Bᵀ G, dB = s·G Aᵀ with G = ∂L/∂ΔW
    const dA = new Float64Array(r * n), dB = new Float64Array(m * r);
    for (let k = 0; k < r; k++) {
      for (let j = 0; j < n; j++) {
        for (let i = 0; i < m; i++) {
          dA[k * n + j] += s * bb[i * r + k] * want.g[i * n + j];
        }
      }
    }
    for (let i = 0; i < m; i++) {
      for (let k = 0; k < r; k++) {
        for (let j = 0; j < n; j++) {
          dB[i * r + k] += s * want.g[i * n + j] * a[k * n + j];
        }
      }
    }
    assertClose(await layer.a.grad!.toArray(), dA, TOL, `dA ${what}`);
    assertClose(await layer.b.grad!.toArray(), dB, TOL, `dB ${what}`);
    assertClose(await readDeltaWeight(gpu, layer), dw, TOL, `ΔW ${what}`);
    const dwT = Float64Array.from({ length: m * n }, (_, q) => dw[(q % m) * n + Math.floor(q / m)]);
    assertClose(await readDeltaWeight(gpu, layer, true), dwT, TOL, `ΔWᵀ ${what}`);
    layer.dispose();
    lin.weight.dispose();
  }
});

Deno.test("LoRA init follows PEFT: kaiming-uniform A and zero B, gaussian, both random", () => {
  const base = loraConfig({ r: 4 });
  const t = initLoraModule(base, 6, 25, 0, 0);
  assert(t.a.every((v) => Math.abs(v) <= 1 / 5) && t.a.some((v) => v !== 0), "A ~ U(±1/√in)");
  assert(t.b.every((v) => v === 0), "B = 0");
  const g = initLoraModule(loraConfig({ r: 4, initLoraWeights: "gaussian" }), 6, 25, 0, 0);
  const std = Math.sqrt(g.a.reduce((s, v) => s + v * v, 0) / g.a.length);
  assert(std > 0.15 && std < 0.35, `gaussian A has std ≈ 1/r, got ${std}`);
  const f = initLoraModule(loraConfig({ r: 4, initLoraWeights: false }), 6, 25, 0, 1);
  assert(f.b.every((v) => Math.abs(v) <= 0.5) && f.b.some((v) => v !== 0), "B ~ U(±1/√r)");
  assertEquals(Array.from(initLoraModule(base, 6, 25, 0, 0).a), Array.from(t.a), "seeded");
  assertThrows(() => initLoraModule(loraConfig({ initLoraWeights: "pissa" }), 6, 25, 0, 0), "pissa");
  assertEquals(loraScaling(loraConfig({ r: 4, loraAlpha: 8 })), 2);
  assertEquals(loraScaling(loraConfig({ r: 4, loraAlpha: 8, useRslora: true })), 4);
});

Deno.test("LoRA dropout: train mode only, a fresh mask per forward", async () => {
  const gpu = await getGpu();
  const p = new Prng(2);
  const m = 4, n = 64, r = 2;
  const layer = new LoraLayer(gpu, {
    module: { outFeatures: m, inFeatures: n, r, a: p.normals(r * n), b: p.normals(m * r) },
    scaling: 1,
    dropout: 0.5,
  });
  const x = Tensor.from(gpu, p.normals(3 * n), [3, n]);
  const run = () => noGrad(() => tidy(() => layer.delta(x))).toArray();
  const evalA = await run(), evalB = await run();
  assertEquals(Array.from(evalA), Array.from(evalB), "eval mode: no dropout");
  layer.train(true);
  const t1 = await run(), t2 = await run();
  assert(Array.from(t1).some((v, i) => v !== evalA[i]), "train mode drops");
  assert(Array.from(t1).some((v, i) => v !== t2[i]), "masks differ between forwards");
  layer.dispose();
  x.dispose();
});

Deno.test("LoRA dropout follows the model's mode: model.train(false) stops it (evaluate switches the model alone)", async () => {
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/gpt2`;
  const model = await loadModel(gpu, dir);
  const peft = await attachAdapter(model, loraConfig({ r: 2, loraDropout: 0.5, initLoraWeights: false }), {
    seed: 1,
  });
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  const logits = () => noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
  try {
    const evaluated = Array.from(await logits());
    peft.train(true);
    model.train(false);
    assertEquals(Array.from(await logits()), evaluated, "the model in eval mode: no LoRA dropout");
    model.train(true);
    const trained = Array.from(await logits());
    model.train(false);
    assert(trained.some((v, i) => v !== evaluated[i]), "the model in train mode: LoRA dropout");
  } finally {
    peft.detach();
    model.dispose();
  }
});

for (const family of ["gpt2", "llama", "roberta"].filter((f) => loadableFamilies().includes(f))) {
  Deno.test(`LoRA: PEFT's ${family} adapter reproduces PEFT's logits; save and reload`, async () => {
    const gpu = await getGpu();
    const adir = `${FIXTURES}adapters/${family}-lora`;
    const rows = await peftAdapterParity(gpu, adir, `${FIXTURES}models/${family}`);
    for (const row of rows) assert(rowPasses(row, 1e-4), `${row.output} ${row.module}: rel-L2 ${row.relL2}`);
    const model = await loadModel(gpu, `${FIXTURES}models/${family}`);
    const peft = await loadAdapterInto(model, adir);
    assertEquals(peft.config.peftType, "LORA");
    const ref = await openSafetensors(`${adir}/reference.safetensors`);
    const batch = await referenceBatch(gpu, ref);
    const logits = await noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
    const tmp = await Deno.makeTempDir();
    try {
      await peft.save(tmp);
      const original = await loadAdapter(adir) as LoraAdapter, saved = await loadAdapter(tmp) as LoraAdapter;
      assertEquals([...saved.modules.keys()].sort(), [...original.modules.keys()].sort());
      for (const [k, mod] of original.modules) {
        assertEquals(Array.from(saved.modules.get(k)!.a), Array.from(mod.a), `${k} lora_A`);
        assertEquals(Array.from(saved.modules.get(k)!.b), Array.from(mod.b), `${k} lora_B`);
      }
      assertEquals(saved.config.targetModules, original.config.targetModules);
      assertEquals(saved.config.fanInFanOut, original.config.fanInFanOut);
      const again = await reloadedLogits(gpu, `${FIXTURES}models/${family}`, tmp, batch);
      assertEquals(Array.from(again), Array.from(logits), "reloaded logits, bit for bit");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
    peft.detach();
    model.dispose();
  });
}

Deno.test("LoRA: a new adapter trains only A and B (and the head for SEQ_CLS)", async () => {
  const family = loadableFamilies().includes("roberta") ? "roberta" : "gpt2";
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/${family}`;
  const model = await loadModel(gpu, dir);
  const config = loraConfig({
    r: 2,
    loraAlpha: 4,
    initLoraWeights: false,
    taskType: family === "roberta" ? "SEQ_CLS" : null,
  });
  const peft = await attachAdapter(model, config, { seed: 1 });
  const head = peft.savedParameters();
  if (family === "roberta") assert(head.length > 0, "SEQ_CLS trains the classifier");
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  const opt = new AdamW(gpu, peft.parameters(), { lr: 0.01 });
  const loss = tidy(() => model.forward(batch).loss!);
  loss.backward();
  for (const t of peft.parameters()) assert(t.grad !== null, "every trainable tensor has a gradient");
  const frozen = [...model.parameters.values()].filter((t) => !head.includes(t));
  assert(frozen.every((t) => t.grad === null), "frozen weights get no gradient");
  opt.step(1);
  loss.dispose();
  peft.detach();
  model.dispose();
  assertThrows(() => loraConfig({ r: 0 }), '"r"');
});

Deno.test("a tied module in modules_to_save is refused before anything trains", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/gpt2`, { task: "causal-lm" });
  try {
    await assertRejects(
      () => attachAdapter(model, loraConfig({ modulesToSave: ["lm_head"] })),
      Error,
      'modules_to_save "lm_head": its lm_head.weight is tied to transformer.wte.weight',
    );
    assert([...model.linears.values()].every((l) => !l.adapter), "nothing attached");
  } finally {
    model.dispose();
  }
});

Deno.test("LoRA: sum of the delta over a 1-D input works", async () => {
  const gpu = await getGpu();
  const p = new Prng(4);
  const layer = new LoraLayer(gpu, {
    module: { outFeatures: 3, inFeatures: 5, r: 2, a: p.normals(10), b: p.normals(6) },
    scaling: 2,
  });
  const x = Tensor.from(gpu, p.normals(5), [5]);
  const y = noGrad(() => tidy(() => sum(layer.delta(x))));
  assert(Number.isFinite(await y.item()));
  layer.dispose();
  x.dispose();
  y.dispose();
});
