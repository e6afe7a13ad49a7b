/**
 * `deno task bench`: the numbers that matter, in one run on one device.
 * - FHT throughput (GB/s, f32 and f16 storage),
 * - one SSH layer's forward + backward over the frozen layer's: spectral op, dense ΔW, folded
 *   (with the fused coefficient gradient where it applies, and without),
 * - matmul GFLOP/s,
 * - a whole SSH training step at the RoBERTa-base and LLaMA-7B-layer shapes (bench/step.ts;
 *   `--no-steps` leaves it out, `deno task bench-step` has every method and a profile),
 * ratios last. Software adapters (llvmpipe/lavapipe) get scaled-down shapes unless `--full`;
 * a GPU gets SPEC §1.6's shapes unless `--small`. Absolute times only mean something on a GPU.
 *
 *     deno task bench [--full | --small] [--reps=N] [--no-steps]
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { encodeFht } from "../lib/spectral/fht.ts";
import { benchLayer, LAYER_SHAPES_GPU, LAYER_SHAPES_SMALL, type LayerTiming } from "./layer.ts";
import { benchMatmul, formatMatmulRows, LARGE_SHAPES, SMALL_SHAPES } from "./matmul.ts";
import { BENCH_MODELS } from "./models.ts";
import { table, timeEncode } from "./stats.ts";
import { benchStep, formatSteps, type StepTiming } from "./step.ts";

const { values } = benchArgs(import.meta.url, {
  full: { type: "boolean" },
  small: { type: "boolean" },
  reps: { type: "string" },
  "no-steps": { type: "boolean" },
});
const gpu = await getGpu();
const software = gpu.software;
const full = values.full || (!software && !values.small);
const reps = values.reps ? Number(values.reps) : full ? 20 : 3;
console.log(
  `hartley bench on ${gpu.description}; ${full ? "full" : "small"} shapes; ` +
    `${gpu.timestamps ? "GPU timestamps" : "wall clock"}; ${new Date().toISOString().slice(0, 10)}`,
);

// FHT: bytes moved = read + write of rows×n values.
const fhtShapes: [number, number][] = full
  ? [[4096, 4096], [4096, 14336], [4096, 11008]]
  : [[256, 1024], [64, 3584], [64, 2752]];
const fhtRows: string[][] = [];
for (const [rows, n] of fhtShapes) {
  for (const f16 of gpu.f16 ? [false, true] : [false]) {
    const bytes = rows * n * (f16 ? 2 : 4);
    const src = gpu.pool.acquire(bytes), dst = gpu.pool.acquire(bytes);
    gpu.stream.clear(src);
    const ms = await timeEncode(gpu, () => encodeFht(gpu, src, dst, rows, n, { f16 }), reps);
    gpu.pool.release(src);
    gpu.pool.release(dst);
    const gb = (2 * rows * n * (f16 ? 2 : 4)) / (ms * 1e6);
    fhtRows.push([`${rows}×${n}`, f16 ? "f16" : "f32", ms.toFixed(3), gb.toFixed(1)]);
  }
}
console.log("\nbatched 1-D FHT along rows\n" + table(["rows×n", "storage", "ms", "GB/s"], fhtRows));

const layers: LayerTiming[] = [];
for (const shape of full ? LAYER_SHAPES_GPU : LAYER_SHAPES_SMALL) {
  layers.push(await benchLayer(gpu, shape, "dht", reps));
}

const mm = await benchMatmul(gpu, full ? LARGE_SHAPES : SMALL_SHAPES, { reps });
console.log("\nmatmul\n" + formatMatmulRows(mm));

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
console.log(`\npeak pooled GPU memory of the tables above: ${mib(gpu.pool.stats().peak)} MiB`);

if (!values["no-steps"]) {
  const steps: StepTiming[] = [];
  for (const name of full ? ["roberta-base", "llama7b-layer"] : ["roberta-small", "llama-small"]) {
    steps.push(await benchStep(gpu, BENCH_MODELS[name], "ssh", { steps: full ? 10 : 2 }));
  }
  console.log(
    "\ntraining step (forward, backward, AdamW), SSH on the attention projections\n" + formatSteps(steps),
  );
}

console.log("\none layer fwd+bwd (x needs grad, W frozen), time over the frozen layer's");
console.log(table(
  [
    "layer M×N",
    "tokens",
    "n",
    "frozen ms",
    "SSH spectral",
    "SSH dense ΔW",
    "SSH folded",
    "folded, fused ∂c",
  ],
  layers.map(({ shape: s, frozen, spectral, dense, folded, foldedFused }) => [
    `${s.m}×${s.n}`,
    `${s.tokens}`,
    `${s.coefs}`,
    frozen.toFixed(3),
    `${(spectral / frozen).toFixed(2)}×`,
    `${(dense / frozen).toFixed(2)}×`,
    `${(folded / frozen).toFixed(2)}×`,
    `${(foldedFused / frozen).toFixed(2)}×`,
  ]),
));
