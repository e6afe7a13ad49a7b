// SSH position selection: one representative per dft mirror class (per layer and global), and the
// global selection's k-way merge against a full sort.
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { Prng, randomLinear } from "./peft_helpers.ts";
import { getGpu, type Gpu, readF32, upload } from "../lib/gpu/mod.ts";
import type { Linear } from "../lib/nn/linear.ts";
import { sshConfig } from "../lib/peft/config.ts";
import { loadAdapter, saveAdapter, type SSHAdapter } from "../lib/peft/files.ts";
import {
  type Candidates,
  globalTopCounts,
  selectGlobalPositions,
  selectLayerPositions,
  sshLayer,
  sumF32,
} from "../lib/peft/ssh.ts";
import {
  encodeEnergy,
  energyReference,
  positionSpace,
  roundHalfEven,
  sampleRemainder,
  selectPositions,
  topkEnergy,
  topkReference,
} from "../lib/spectral/select.ts";
import type { Transform } from "../lib/spectral/transforms.ts";

/** The flat index of (−u, −v) mod (M, N). */
function mirror(f: number, m: number, n: number): number {
  return ((m - Math.floor(f / n)) % m) * n + (n - (f % n)) % n;
}

/** One representative (the smaller flat index) per dft mirror class, ascending. */
function representatives(m: number, n: number): number[] {
  return Array.from({ length: m * n }, (_, f) => f).filter((f) => f <= mirror(f, m, n));
}

const flatsOf = (pos: Int32Array, n: number) =>
  Array.from({ length: pos.length / 2 }, (_, k) => pos[2 * k] * n + pos[2 * k + 1]);

/** Throws unless the flat positions are n distinct dft basis functions (no mirror pair). */
function assertDistinctBasis(flats: number[], m: number, n: number, what: string): void {
  const set = new Set(flats);
  const paired = flats.filter((f) => mirror(f, m, n) !== f && set.has(mirror(f, m, n)));
  assertEquals(paired.length, 0, `${what}: positions whose mirror is selected too`);
  assertEquals(
    new Set(flats.map((f) => Math.min(f, mirror(f, m, n)))).size,
    flats.length,
    `${what}: classes`,
  );
}

Deno.test("dft selection 'layer': n distinct basis functions, no position with its mirror", async () => {
  const gpu = await getGpu();
  const m = 64, n = 48;
  const p = new Prng(3);
  const weight = upload(gpu, Float32Array.from({ length: m * n }, () => p.normal()));
  for (const energyRatio of [0.7, 1, 0]) {
    const pos = await selectPositions(gpu, weight, m, n, { n: 100, energyRatio, transform: "dft", seed: 0 });
    assertDistinctBasis(flatsOf(pos, n), m, n, `64×48 δ=${energyRatio}`);
  }
  gpu.pool.release(weight);
});

Deno.test("dft selection 'layer' ranks and draws over one representative per mirror class", async () => {
  const gpu = await getGpu();
  for (
    const [m, n, layout] of [[9, 7, "out_in"], [10, 6, "in_out"], [1, 8, "out_in"], [8, 1, "in_out"]] as const
  ) {
    const p = new Prng(m * 10 + n);
    const { lin, w } = randomLinear(gpu, p, m, n, layout);
    const reps = representatives(m, n);
    const e = energyReference("dft", w, m, n);
    const count = Math.min(8, reps.length), nEnergy = roundHalfEven(0.6 * count), seed = 4;
    const top = topkReference(reps.map((f) => e[f]), nEnergy);
    const rest = sampleRemainder(top, reps.length, count - nEnergy, seed);
    const got = await selectLayerPositions(gpu, lin, { n: count, energyRatio: 0.6, transform: "dft", seed });
    assertEquals(flatsOf(got, n), [...top, ...rest].map((r) => reps[r]), `${m}×${n} ${layout}`);
    const all = await selectLayerPositions(gpu, lin, {
      n: reps.length,
      energyRatio: 0.5,
      transform: "dft",
      seed,
    });
    assertEquals(flatsOf(all, n).sort((a, b) => a - b), reps, `${m}×${n}: every class once`);
    lin.weight.dispose();
  }
});

Deno.test("dft selection 'global': one representative per mirror class over all layers", async () => {
  const gpu = await getGpu();
  const p = new Prng(21);
  const sizes: [number, number][] = [[6, 5], [4, 9], [7, 3], [16, 12]];
  const layers = sizes.map(([m, n], i) =>
    randomLinear(gpu, p, m, n, i === 1 ? "in_out" : "out_in", { path: `l${i}` })
  );
  const n = 6, seed = 9;
  const got = await selectGlobalPositions(gpu, layers.map((l) => l.lin), {
    n,
    energyRatio: 0.5,
    transform: "dft",
    seed,
  });
  // the documented algorithm over the concatenated class spaces, in float64
  const ranked: { l: number; r: number; e: number }[] = [];
  const offsets: number[] = [];
  let classes = 0;
  layers.forEach(({ w }, l) => {
    const [m, nn] = sizes[l];
    const e = energyReference("dft", w, m, nn);
    const total = e.reduce((a, b) => a + b, 0);
    representatives(m, nn).forEach((f, r) => ranked.push({ l, r, e: e[f] / total }));
    offsets.push(classes);
    classes += representatives(m, nn).length;
  });
  ranked.sort((a, b) => b.e - a.e || a.l - b.l || a.r - b.r);
  const budget = n * sizes.length, nEnergy = roundHalfEven(0.5 * budget);
  const top = ranked.slice(0, nEnergy);
  const rest = sampleRemainder(top.map((t) => offsets[t.l] + t.r), classes, budget - nEnergy, seed);
  const want: number[][] = sizes.map(() => []);
  for (const t of top) want[t.l].push(t.r);
  for (const g of rest) {
    const l = offsets.findLastIndex((o) => o <= g);
    want[l].push(g - offsets[l]);
  }
  got.forEach((pos, l) => {
    const [m, nn] = sizes[l];
    const reps = representatives(m, nn);
    assertEquals(flatsOf(pos, nn), want[l].map((r) => reps[r]), `layer ${l}`);
    assertDistinctBasis(flatsOf(pos, nn), m, nn, `layer ${l}`);
  });
  for (const l of layers) l.lin.weight.dispose();
});

/**
 * The 'global' energy part as the code did before the k-way merge: every layer's top-k
 * candidates (from the same GPU energies) as objects, one full sort, the first k.
 */
async function globalEnergyBySort(
  gpu: Gpu,
  linears: Linear[],
  transform: Transform,
  k: number,
): Promise<number[][]> {
  const ranked: { layer: number; flat: number; e: number }[] = [];
  for (const [layer, lin] of linears.entries()) {
    const m = lin.outFeatures, n = lin.inFeatures, size = m * n;
    const energy = encodeEnergy(gpu, transform, lin.weight.buffer, m, n, {
      transposed: lin.layout === "in_out",
    });
    const total = await sumF32(gpu, energy, size);
    const flat = await topkEnergy(gpu, energy, size, Math.min(k, size));
    const values = await readF32(gpu, energy, size);
    for (const f of flat) ranked.push({ layer, flat: f, e: total > 0 ? values[f] / total : 0 });
    gpu.pool.release(energy);
  }
  ranked.sort((a, b) => b.e - a.e || a.layer - b.layer || a.flat - b.flat);
  const out: number[][] = linears.map(() => []);
  for (const r of ranked.slice(0, k)) out[r.layer].push(r.flat);
  return out;
}

Deno.test("selection 'global' energy part equals the full sort of all candidates (ties, zeros, copies)", async () => {
  const gpu = await getGpu();
  const p = new Prng(31);
  const sizes: [number, number][] = [[6, 5], [4, 9], [6, 5], [7, 3], [8, 8], [3, 3], [6, 5], [5, 7]];
  const made = sizes.map(([m, n], i) => {
    // layers 2 and 6 copy layer 0 (exact cross-layer ties: the smaller layer wins)
    const prng = i === 0 || i === 2 || i === 6 ? new Prng(77) : p;
    return randomLinear(gpu, prng, m, n, i % 2 ? "in_out" : "out_in", { path: `l${i}` });
  });
  gpu.stream.clear(made[5].lin.weight.buffer); // a zero layer: all its energies tie at 0
  const linears = made.map((x) => x.lin);
  for (const transform of ["dht", "dht2d"] as Transform[]) {
    for (const n of [5, 31]) { // 31: the budget reaches the zero layer
      const got = await selectGlobalPositions(gpu, linears, { n, energyRatio: 1, transform, seed: 1 });
      const want = await globalEnergyBySort(gpu, linears, transform, n * linears.length);
      got.forEach((pos, l) =>
        assertEquals(flatsOf(pos, sizes[l][1]), want[l], `${transform} n=${n} layer ${l}`)
      );
      assert(
        got[0].length >= got[2].length && got[2].length >= got[6].length,
        "copies rank after the original",
      );
    }
  }
  for (const { lin } of made) lin.weight.dispose();
});

Deno.test("positionSpace: every flat index for dht/dht2d, the smaller member of each dft mirror class", () => {
  const shapes = [[1, 1], [1, 2], [2, 1], [1, 5], [5, 1], [2, 3], [3, 2], [2, 2], [6, 10], [7, 9], [8, 5], [
    64,
    48,
  ]];
  for (const [m, n] of shapes) {
    for (const transform of ["dht", "dht2d"] as Transform[]) {
      const space = positionSpace(transform, m, n);
      assertEquals(space.size, m * n);
      assertEquals(Array.from({ length: m * n }, (_, r) => space.flat(r)), [...Array(m * n).keys()]);
    }
    const space = positionSpace("dft", m, n);
    const selfConjugate = (m % 2 ? 1 : 2) * (n % 2 ? 1 : 2);
    assertEquals(space.size, (m * n + selfConjugate) / 2, `${m}×${n} size`);
    assertEquals(
      Array.from({ length: space.size }, (_, r) => space.flat(r)),
      representatives(m, n),
      `${m}×${n}`,
    );
  }
});

Deno.test("dft: n above the number of mirror classes is a clear error; stored mirror pairs still load", async () => {
  const gpu = await getGpu();
  const p = new Prng(2);
  const { lin } = randomLinear(gpu, p, 4, 3, "out_in", { path: "small" }); // (12 + 2) / 2 = 7 classes
  await assertRejects(
    () => selectLayerPositions(gpu, lin, { n: 8, energyRatio: 0.5, transform: "dft", seed: 0 }),
    RangeError,
    "small: n = 8 positions do not fit its 4×3 spectrum (out×in; n must be an integer in [1, 7, the dft's",
  );
  await assertRejects(
    () => selectGlobalPositions(gpu, [lin], { n: 8, energyRatio: 0.5, transform: "dft", seed: 0 }),
    RangeError,
    "7 distinct dft basis functions",
  );
  // an adapter saved before: (1, 1) and (3, 2) are a mirror pair
  const config = sshConfig({ n: 3, transform: "dft", targetModules: ["small"] });
  const indices = Int32Array.of(1, 1, 3, 2, 0, 0);
  const modules = new Map([["small", {
    outFeatures: 4,
    inFeatures: 3,
    spectrum: Float32Array.of(1, 2, 3),
    indices,
  }]]);
  const tmp = await Deno.makeTempDir();
  try {
    await saveAdapter(tmp, { config, modules, saved: new Map() });
    const loaded = await loadAdapter(tmp) as SSHAdapter;
    const layer = sshLayer(gpu, lin, loaded.modules.get("small")!, loaded.config);
    assertEquals(Array.from(layer.positions), Array.from(indices));
    layer.dispose();
  } finally {
    await Deno.remove(tmp, { recursive: true });
    lin.weight.dispose();
  }
});

/** The old 'global' merge: every candidate as an object, one full sort, the first k; counts per layer. */
function countsBySort(candidates: Candidates[], k: number): number[] {
  const ranked: { layer: number; flat: number; e: number }[] = [];
  candidates.forEach((c, layer) =>
    c.ranks.forEach((flat, i) => ranked.push({ layer, flat, e: c.energy[i] }))
  );
  ranked.sort((a, b) => b.e - a.e || a.layer - b.layer || a.flat - b.flat);
  const counts = candidates.map(() => 0);
  ranked.slice(0, k).forEach((r, i) => {
    assertEquals(r.flat, candidates[r.layer].ranks[counts[r.layer]], `entry ${i} is the next of its layer`);
    counts[r.layer]++;
  });
  return counts;
}

Deno.test("globalTopCounts (k-way merge) equals the full sort on random lists with ties and zeros", () => {
  const p = new Prng(5);
  for (let trial = 0; trial < 60; trial++) {
    const layers = 1 + p.below(12), levels = 1 + p.below(trial % 3 === 0 ? 3 : 50);
    const candidates = Array.from({ length: layers }, () => {
      const size = 1 + p.below(40);
      const list = Array.from(
        { length: p.below(size + 1) },
        () => ({ r: p.below(size), e: p.below(levels) / levels }),
      );
      const unique = [...new Map(list.map((x) => [x.r, x])).values()].sort((a, b) => b.e - a.e || a.r - b.r);
      return { ranks: Uint32Array.from(unique, (x) => x.r), energy: Float64Array.from(unique, (x) => x.e) };
    });
    const all = candidates.reduce((s, c) => s + c.ranks.length, 0);
    for (const k of [0, 1, Math.floor(all / 2), all]) {
      assertEquals(globalTopCounts(candidates, k), countsBySort(candidates, k), `trial ${trial} k ${k}`);
    }
  }
});
