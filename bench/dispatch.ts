/**
 * What one dispatch costs beyond its kernel: GPU time per dispatch of a chain of `count`
 * element-wise adds, each reading the previous one's output (the dependent case, as in a
 * training step) and each reading the same inputs (independent), for a tiny and a
 * transformer-sized tensor. The tiny dependent case is the per-dispatch floor that fusing
 * kernels saves; the CPU column is what recording one dispatch costs in JS and the runtime.
 * A third chain puts a 3 KB buffer copy after each add (a bias stacked for the q/k/v product):
 * the copy ends the compute pass, so its row is the cost of a copy and a pass break.
 * The chains barely load a GPU, whose clocks then stay low (an idle H200 read 345 MHz): each
 * timing follows half a second of 2048³ products (128³ on a software adapter), and the clocks
 * are printed where `nvidia-smi` answers.
 *
 *     deno run -A bench/dispatch.ts [--count=400]
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { add, noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { encodeMatmul } from "../lib/linalg/matmul.ts";
import { table, timeEncode, warmUp } from "./stats.ts";

const { values } = benchArgs(import.meta.url, { count: { type: "string" } });
const count = Number(values.count ?? 400);
const gpu = await getGpu();
console.log(`dispatch cost on ${gpu.description}; ${count} adds per timing; ${new Date().toISOString()}`);
const rows: string[][] = [];
const side = gpu.software ? 128 : 2048,
  big = gpu.pool.acquire(side * side * 4),
  out = gpu.pool.acquire(side * side * 4);
/** Raise the GPU's clocks: half a second of products, then the clocks nvidia-smi reads, if any. */
async function loadGpu(): Promise<string> {
  await warmUp(gpu, () => encodeMatmul(gpu, big, big, out, side, side, side), 500);
  try {
    const smi = new Deno.Command("nvidia-smi", { args: ["--query-gpu=clocks.sm", "--format=csv,noheader"] });
    return new TextDecoder().decode((await smi.output()).stdout).trim();
  } catch {
    return "";
  }
}
for (const elements of [1024, 4096 * 768]) {
  const a = Tensor.zeros(gpu, [elements]);
  const b = Tensor.zeros(gpu, [elements]);
  const scratch = gpu.pool.acquire(3072);
  for (const chain of ["dependent", "independent", "dependent, copy between"]) {
    const dependent = chain !== "independent", copies = chain.endsWith("copy between");
    let cpuMs = 0;
    const encode = () => {
      const t0 = performance.now();
      noGrad(() =>
        tidy(() => {
          let x = a;
          for (let i = 0; i < count; i++) {
            x = add(dependent ? x : a, b);
            if (copies) gpu.stream.copy(b.buffer, 0, scratch, 0, 3072);
          }
        })
      );
      cpuMs = performance.now() - t0;
      gpu.stream.flush();
    };
    const clock = await loadGpu();
    const ms = await timeEncode(gpu, encode, 5);
    rows.push([
      `${elements}`,
      chain,
      `${(1000 * ms / count).toFixed(2)}`,
      `${(1000 * cpuMs / count).toFixed(2)}`,
      clock,
    ]);
  }
  a.dispose();
  b.dispose();
  gpu.pool.release(scratch);
}
gpu.pool.release(big);
gpu.pool.release(out);
console.log(table(["elements", "chain", "GPU µs per dispatch", "CPU µs per dispatch", "clock before"], rows));
