/**
 * One SSH layer on the GPU, as in the README: choose positions from a frozen weight's Hartley
 * energy, apply ΔW to a batch of tokens without building it, and get the coefficient gradient.
 *
 *     deno run -A examples/spectral_layer.ts
 * @module
 */
import { getGpu, Prng, readF32, selectPositions, SpectralAdapterOp, upload } from "../mod.ts";

const gpu = await getGpu();
const [m, n, tokens, count] = [96, 160, 64, 300];
const rng = new Prng(0);
const weight = upload(gpu, Float32Array.from({ length: m * n }, () => rng.normal() * 0.02)); // frozen W (out, in)
// 70% of the positions where T(W)² is largest, the rest drawn with the seeded PRNG.
const positions = await selectPositions(gpu, weight, m, n, {
  n: count,
  energyRatio: 0.7,
  transform: "dht",
  seed: 0,
});
const op = new SpectralAdapterOp(gpu, { m, nIn: n, positions, transform: "dht", alpha: 150 });

const coef = upload(gpu, rng.normals(count));
const x = upload(gpu, Float32Array.from({ length: tokens * n }, () => rng.normal()));
const y = gpu.pool.acquire(tokens * m * 4);
const saved = op.forward(x, coef, y, tokens, { accumulate: false })!; // y = x ΔWᵀ; no ΔW is built
const dcoef = gpu.pool.acquire(count * 4);
gpu.stream.clear(dcoef);
op.backward(saved, y, coef, null, dcoef); // ∂L/∂c for L = ½‖y‖², in the same command stream
const grad = await readF32(gpu, dcoef, count); // the first submit and the only readback
console.log(
  `positions[0] = (${positions[0]}, ${positions[1]}), ∂L/∂c[0..3] = ${
    [...grad.slice(0, 3)].map((g) => g.toFixed(4))
  }`,
);
