/**
 * W + ΔW written by one adapter's fold (`SpectralAdapterOp.materialize` with a base weight): the
 * one-kernel route (kernels/delta_weight.ts) and the three passes, against an FHT of as many
 * rows as ΔW has (the transform work alone), with the positions spread at random or crowded
 * into a few low-frequency rows and columns (as energy selection picks them from a trained
 * weight: a few CSR rows of S̃ then hold most entries). A RoBERTa-base SSH step folds 24 of them
 * (768×768); the H200's profile gave 52 µs each in session 23, about three FHTs of 4096 rows.
 *
 *     deno run -A bench/delta_weight.ts            # 768×768 and 1024×1024, n = 750
 *     deno run -A bench/delta_weight.ts --reps=50 --shapes=768x768x750,3072x768x750
 * @module
 */
import { getGpu, upload } from "../lib/gpu/mod.ts";
import { SpectralAdapterOp } from "../lib/spectral/adapter_op.ts";
import { DELTA_WEIGHT_HEURISTICS } from "../lib/spectral/delta_weight.ts";
import { encodeFht } from "../lib/spectral/fht.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { table, timeEncodeEach, uniformValues } from "./stats.ts";

/** `count` distinct (row, col) positions on m×n: anywhere, or within the first `rows` × `cols`. */
function positions(rng: Prng, m: number, n: number, count: number, rows = m, cols = n): Int32Array {
  const seen = new Set<number>();
  const out = new Int32Array(2 * count);
  for (let k = 0; k < count;) {
    const r = rng.below(rows), c = rng.below(cols);
    if (seen.has(r * n + c)) continue;
    seen.add(r * n + c);
    [out[2 * k], out[2 * k + 1]] = [r, c];
    k++;
  }
  return out;
}

const arg = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const reps = Number(arg("reps") ?? 20);
if (!Number.isInteger(reps) || reps < 1) {
  throw new Error(`--reps: expected a whole number ≥ 1, got '${arg("reps")}'`);
}
const shapes = (arg("shapes") ?? "768x768x750,1024x1024x750").split(",").map((s) => {
  const [m, n, count] = s.split("x").map(Number);
  if (![m, n, count].every((v) => Number.isInteger(v) && v > 0) || count > m * n) {
    throw new Error(`--shapes: '${s}' is not MxNxCOUNT with COUNT ≤ M·N`);
  }
  return { m, n, count };
});

const gpu = await getGpu();
console.log(`W + ΔW of one adapter on ${gpu.description}; median of ${reps}, GPU timestamps\n`);
const rows: string[][] = [];
for (const { m, n, count } of shapes) {
  const side = Math.ceil(Math.sqrt(count * 2)); // a crowded block twice the entries' area
  for (const spread of ["random", "crowded"] as const) {
    const rng = new Prng(m + n);
    const at = spread === "random" ? positions(rng, m, n, count) : positions(rng, m, n, count, side, side);
    const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions: at, transform: "dht", alpha: 300 });
    const coef = upload(gpu, uniformValues(count, 1, 1));
    const w = upload(gpu, uniformValues(m * n, 0.02, 2));
    const dst = gpu.pool.acquire(m * n * 4), rowsOfW = gpu.pool.acquire(m * n * 4);
    const fold = (fused: boolean) => () => {
      const before = DELTA_WEIGHT_HEURISTICS.fused;
      DELTA_WEIGHT_HEURISTICS.fused = fused;
      try {
        op.materialize(coef, dst, { base: w });
      } finally {
        DELTA_WEIGHT_HEURISTICS.fused = before;
      }
    };
    const fht = () => encodeFht(gpu, w, rowsOfW, m, n);
    const [one, three, floor] = await timeEncodeEach(gpu, [fold(true), fold(false), fht], reps);
    const us = (ms: number) => (1000 * ms).toFixed(1);
    rows.push([
      `${m}×${n}`,
      `${count}`,
      spread,
      us(one),
      us(three),
      us(floor),
      `${(one / floor).toFixed(1)}×`,
    ]);
    op.dispose();
    for (const b of [coef, w, dst, rowsOfW]) gpu.pool.release(b);
  }
}
console.log(
  table(
    ["ΔW M×N", "n", "positions", "one kernel µs", "three passes µs", "FHT of M rows µs", "one / FHT"],
    rows,
  ),
);
