/**
 * One-workgroup-per-row kernels (softmax, LayerNorm) at 32 and 128 invocations per row, side
 * by side, at the row lengths of attention scores (128, 512) and hidden states (768): the data
 * behind `rowWorkgroupSize` (kernels/indexing.ts).
 *
 *     deno run -A bench/rows.ts [--rows=4096]
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu, grid, upload } from "../lib/gpu/mod.ts";
import { normForwardKernel } from "../kernels/norm.ts";
import { softmaxKernel } from "../kernels/softmax.ts";
import { dropoutWords } from "../lib/tensor/ops/dropout.ts";
import { windowWord } from "../lib/tensor/ops/softmax.ts";
import { f, u32s } from "../lib/tensor/ops/util.ts";
import { table, timeEncodeEach, uniformValues } from "./stats.ts";

const { values } = benchArgs(import.meta.url, { rows: { type: "string" } });
const rows = Number(values.rows ?? 4096);
const gpu = await getGpu();
console.log(`row kernels on ${gpu.description}; ${rows} rows; ${new Date().toISOString()}`);
const out: string[][] = [];
for (const s of [128, 512, 768]) {
  const x = upload(gpu, uniformValues(rows * s, 1, 1));
  const w = upload(gpu, uniformValues(s, 1, 2)), b = upload(gpu, uniformValues(s, 1, 3));
  const y = gpu.pool.acquire(rows * s * 4), stats = gpu.pool.acquire(rows * 8);
  const softmax = (wg: number) => () =>
    gpu.stream.dispatch(
      softmaxKernel(false, false, wg),
      [x, y],
      grid(gpu, rows),
      u32s(rows, s, 1, s - 1, 1, f(1), ...dropoutWords(null), windowWord(undefined)),
    );
  const norm = (wg: number) => () =>
    gpu.stream.dispatch(
      normForwardKernel(false, true, wg),
      [x, w, b, y, stats],
      grid(gpu, rows),
      u32s(rows, s, f(1e-5), ...dropoutWords(null)),
    );
  const ms = await timeEncodeEach(gpu, [softmax(32), softmax(128), norm(32), norm(128)], 5);
  const gbs = (t: number) => ((2 * rows * s * 4) / (t * 1e6)).toPrecision(3);
  out.push(["softmax", `${s}`, ...[ms[0], ms[1]].map((t) => `${t.toFixed(3)} (${gbs(t)} GB/s)`)]);
  out.push(["layerNorm", `${s}`, ...[ms[2], ms[3]].map((t) => `${t.toFixed(3)} (${gbs(t)} GB/s)`)]);
  for (const buf of [x, w, b, y, stats]) gpu.pool.release(buf);
}
console.log(table(["kernel", "row length", "32 invocations, ms", "128 invocations, ms"], out));
