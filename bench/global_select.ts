/**
 * SSH `global` selection's merge of the layers' ranked candidates, on the CPU: the heap merge of
 * `globalTopCounts` against one object per candidate and a full sort (how it was done before
 * session 17). Synthetic energies, LLaMA-7B's q/k/v/o shape by default: 128 layers, n = 1000,
 * δ = 0.7, so k = round(0.7 · 1000 · 128) = 89,600 candidates from each layer.
 *
 *     deno run -A bench/global_select.ts [--layers 128] [--n 1000] [--ratio 0.7]
 * @module
 */
import { benchArgs } from "./args.ts";
import { type Candidates, globalTopCounts } from "../lib/peft/ssh.ts";
import { Prng } from "../lib/spectral/prng.ts";

const { values } = benchArgs(import.meta.url, {
  layers: { type: "string", default: "128" },
  n: { type: "string", default: "1000" },
  ratio: { type: "string", default: "0.7" },
});
const layers = Number(values.layers), k = Math.round(Number(values.ratio) * Number(values.n) * layers);

/** Each layer's k best: energies descending (normalised to sum ≤ 1), ranks distinct. */
function candidates(): Candidates[] {
  const rng = new Prng(1);
  return Array.from({ length: layers }, () => {
    const energy = Float64Array.from({ length: k }, () => rng.uniform() / k).sort().reverse();
    return { ranks: Uint32Array.from({ length: k }, (_, i) => i), energy };
  });
}

/** The former merge: every candidate an object, sorted by energy, then layer, then rank. */
function sortedCounts(all: readonly Candidates[]): number[] {
  const items: { layer: number; rank: number; e: number }[] = [];
  all.forEach((c, layer) => c.energy.forEach((e, i) => items.push({ layer, rank: c.ranks[i], e })));
  items.sort((a, b) => b.e - a.e || a.layer - b.layer || a.rank - b.rank);
  const counts = all.map(() => 0);
  for (const it of items.slice(0, k)) counts[it.layer]++;
  return counts;
}

function timed(name: string, fn: () => number[]): number[] {
  const heap0 = Deno.memoryUsage().heapUsed, t0 = performance.now();
  const out = fn();
  const ms = performance.now() - t0, mb = (Deno.memoryUsage().heapUsed - heap0) / 2 ** 20;
  console.log(`${name.padEnd(22)} ${ms.toFixed(1).padStart(9)} ms   heap +${mb.toFixed(1)} MB`);
  return out;
}

const all = candidates();
console.log(`${layers} layers, ${k} candidates each (k = ${k})`);
const heap = timed("heap merge", () => globalTopCounts(all, k));
const sorted = timed("objects + full sort", () => sortedCounts(all));
console.log(`same counts: ${heap.every((c, i) => c === sorted[i])}`);
