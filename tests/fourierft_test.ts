import { reloadedLogits } from "./model_helpers.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { FIXTURES, loadableFamilies, Prng, randomLinear, randomPositions } from "./peft_helpers.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { fourierftConfig } from "../lib/peft/config.ts";
import { type FourierFTAdapter, loadAdapter } from "../lib/peft/files.ts";
import {
  fourierftAlpha,
  fourierftDeltaReference,
  fourierftLayer,
  ifft2Norm,
  initFourierftModule,
  peftFourierftPositions,
} from "../lib/peft/fourierft.ts";
import { Mt19937, torchRandpermPrefix } from "../lib/peft/torch_randperm.ts";
import { readDeltaWeight } from "../lib/peft/merge.ts";
import { noGrad, tidy } from "../lib/tensor/mod.ts";
import { peftAdapterParity, rowPasses } from "../tools/adapter_parity.ts";

Deno.test("FourierFT ΔW is PEFT's Re(ifft2(S))·scaling for every ifft2_norm, on awkward shapes", async () => {
  const gpu = await getGpu();
  for (const [m, n] of [[7, 12], [1, 5], [10, 3]]) {
    for (const norm of ["backward", "ortho", "forward"] as const) {
      const p = new Prng(m * n);
      const { lin } = randomLinear(gpu, p, m, n);
      const count = Math.min(6, m * n - 1);
      const module = {
        outFeatures: m,
        inFeatures: n,
        spectrum: p.normals(count),
        indices: randomPositions(p, m, n, count),
      };
      const config = fourierftConfig({ nFrequency: count, scaling: 20, extra: { ifft2_norm: norm } });
      assertEquals(ifft2Norm(config), norm);
      const layer = fourierftLayer(gpu, lin, module, config);
      assertEquals(layer.transform, "dft");
      assertEquals(layer.alpha, fourierftAlpha(20, m, n, norm));
      assertClose(
        await readDeltaWeight(gpu, layer),
        fourierftDeltaReference(module, 20, norm),
        1e-5,
        `${m}×${n} ${norm}`,
      );
      layer.dispose();
      lin.weight.dispose();
    }
  }
  assertThrows(() => ifft2Norm(fourierftConfig({ extra: { ifft2_norm: "none" } })), "ifft2_norm");
});

for (const family of ["gpt2", "llama", "roberta"].filter((f) => loadableFamilies().includes(f))) {
  Deno.test(`FourierFT: PEFT's ${family} adapter reproduces PEFT's delta weights and logits`, async () => {
    const gpu = await getGpu();
    const adir = `${FIXTURES}adapters/${family}-fourierft`;
    const rows = await peftAdapterParity(gpu, adir, `${FIXTURES}models/${family}`);
    // positions redrawn from random_loc_seed as PEFT draws them, no side file given
    assert(
      ["positions", "delta_w", "logits"].every((o) => rows.some((r) => r.output === o)),
      "rows compared",
    );
    for (const row of rows) assert(rowPasses(row, 1e-4), `${row.output} ${row.module}: rel-L2 ${row.relL2}`);
  });
}

Deno.test("FourierFT: a new adapter draws PEFT's positions, saves them, and reloads with or without its side file", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/gpt2`;
  const model = await loadModel(gpu, dir);
  const config = fourierftConfig({
    nFrequency: 30,
    scaling: 50,
    fanInFanOut: true,
  });
  const peft = await attachAdapter(model, config);
  const adapter = await peft.toAdapter() as FourierFTAdapter;
  for (const mod of adapter.modules.values()) {
    assertEquals(mod.indices!.length, 60);
    assert(mod.spectrum.some((v) => v !== 0), "init_weights false: N(0, 1) coefficients");
  }
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  const logits = await noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
  const tmp = await Deno.makeTempDir();
  try {
    await peft.save(tmp);
    await Deno.stat(`${tmp}/fourierft_indices.safetensors`);
    // the default targets written out: PEFT's own FourierFT default for GPT-2 is mlp.c_proj
    const saved = JSON.parse(await Deno.readTextFile(`${tmp}/adapter_config.json`));
    assertEquals(saved.target_modules, ["c_attn"]);
    const loaded = await loadAdapter(tmp) as FourierFTAdapter;
    for (const [k, mod] of adapter.modules) {
      assertEquals(Array.from(loaded.modules.get(k)!.indices!), Array.from(mod.indices!));
      // PEFT's draw for this layer: what it redraws when it loads the adapter
      const { outFeatures: m, inFeatures: n } = mod;
      assertEquals(Array.from(mod.indices!), Array.from(peftFourierftPositions(m, n, 30, 777)), k);
    }
    const again = await reloadedLogits(gpu, dir, tmp, batch);
    assertEquals(Array.from(again), Array.from(logits), "reloaded logits, bit for bit");
    // without the side file, as PEFT loads it: the same positions, the same logits
    await Deno.remove(`${tmp}/fourierft_indices.safetensors`);
    assertEquals(
      Array.from(await reloadedLogits(gpu, dir, tmp, batch)),
      Array.from(logits),
      "without the side file",
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  peft.detach();
  model.dispose();
});

Deno.test("FourierFT: n_frequency is at most M·N; positions are distinct and seeded", async () => {
  const gpu = await getGpu();
  const p = new Prng(6);
  const { lin } = randomLinear(gpu, p, 4, 5, "out_in", { path: "tiny" });
  assertThrows(
    () => initFourierftModule(fourierftConfig({ nFrequency: 21 }), lin, 0),
    "tiny: n_frequency = 21 must be at most M·N = 4·5 = 20",
  );
  // every position, as PEFT allows
  const all = initFourierftModule(fourierftConfig({ nFrequency: 20 }), lin, 0);
  assertEquals(
    new Set(Array.from({ length: 20 }, (_, k) => all.indices![2 * k] * 5 + all.indices![2 * k + 1])).size,
    20,
  );
  const config = fourierftConfig({ nFrequency: 19, initWeights: true });
  const a = initFourierftModule(config, lin, 0), b = initFourierftModule(config, lin, 0);
  assertEquals(Array.from(a.indices!), Array.from(b.indices!));
  assertEquals(
    new Set(Array.from({ length: 19 }, (_, k) => a.indices![2 * k] * 5 + a.indices![2 * k + 1])).size,
    19,
  );
  assert(a.spectrum.every((v) => v === 0), "init_weights true: zeros");
  // every layer of a size draws the same positions from random_loc_seed, as PEFT's layers do
  assertEquals(Array.from(initFourierftModule(config, lin, 1).indices!), Array.from(a.indices!));
  const other = initFourierftModule(fourierftConfig({ nFrequency: 19, randomLocSeed: 5 }), lin, 0);
  assert(
    Array.from(other.indices!).join() !== Array.from(a.indices!).join(),
    "another seed, other positions",
  );
  lin.weight.dispose();
});

Deno.test("torch randperm: the sparse prefix is a full Fisher–Yates shuffle's, and sizes past 2^36 are refused", () => {
  // the dense shuffle PyTorch's CPU kernel runs, on the same MT19937 stream
  const dense = (n: number, seed: number) => {
    const r = Array.from({ length: n }, (_, i) => i), rng = new Mt19937(seed);
    for (let i = 0; i < n - 1; i++) {
      const z = rng.next() % (n - i);
      [r[i], r[z + i]] = [r[z + i], r[i]];
    }
    return r;
  };
  for (const [n, seed] of [[1, 0], [2, 3], [7, 777], [97, 2 ** 32 + 5], [1000, 42]]) {
    const want = dense(n, seed);
    assertEquals(Array.from(torchRandpermPrefix(n, seed, n)), want, `n ${n}`);
    assertEquals(Array.from(torchRandpermPrefix(n, seed, Math.min(n, 5))), want.slice(0, 5), `n ${n}, 5`);
    assertEquals(new Set(want).size, n);
  }
  // torch seeds MT19937 with the seed's low 32 bits; its first output for seed 5489 is the standard 3499211612
  assertEquals(new Mt19937(5489).next(), 3499211612);
  assertEquals(
    Array.from(torchRandpermPrefix(97, 2 ** 32 + 5, 9)),
    Array.from(torchRandpermPrefix(97, 5, 9)),
  );
  assertThrows(
    () => torchRandpermPrefix(2 ** 36 + 1, 0, 1),
    "n = 68719476737 must be an integer in [0, 2^36]",
  );
  assertThrows(() => torchRandpermPrefix(5, 0, 6), "take = 6 must be an integer in [0, 5]");
});
