/**
 * Two facts about Deno's WebGPU that lib/gpu/stream.ts is built around, measured directly:
 * - how long `queue.submit` and a following `queue.onSubmittedWorkDone()` call take to
 *   return while the GPU works (the latter blocks the calling thread until the GPU is idle);
 * - uploading through a buffer mapped at creation against `queue.writeBuffer`.
 *
 *     deno run -A bench/runtime.ts
 * @module
 */
import { getGpu } from "../lib/gpu/mod.ts";
import { table } from "./stats.ts";

const gpu = await getGpu();
const { device } = gpu;
console.log(`Deno WebGPU runtime facts on ${gpu.description}; ${new Date().toISOString()}`);

// A kernel that runs long enough to see who waits for it: a loop per element.
const n = 1 << 22; // elements of the buffer; the first 1/16 are worked on
const work = device.createBuffer({ size: n * 4, usage: GPUBufferUsage.STORAGE });
const module = device.createShaderModule({
  code: `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  var v = x[g.x];
  for (var i = 0u; i < 4000u; i++) { v = v * 1.0000001 + 0.5; }
  x[g.x] = v;
}`,
});
const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
const group = device.createBindGroup({
  layout: pipeline.getBindGroupLayout(0),
  entries: [{ binding: 0, resource: { buffer: work } }],
});
const job = () => {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(n / 64 / 16); // 4096 workgroups
  pass.end();
  return enc.finish();
};
const rows: string[][] = [];
for (let r = 0; r < 3; r++) {
  await device.queue.onSubmittedWorkDone();
  const t0 = performance.now();
  device.queue.submit([job()]);
  const t1 = performance.now();
  const done = device.queue.onSubmittedWorkDone();
  const t2 = performance.now();
  await done;
  const t3 = performance.now();
  rows.push([`${r + 1}`, (t1 - t0).toFixed(1), (t2 - t1).toFixed(1), (t3 - t2).toFixed(1)]);
}
console.log("\none long dispatch (ms)");
console.log(table(["run", "submit returns", "onSubmittedWorkDone() returns", "then the promise"], rows));

// Uploads of 64 MiB into a storage buffer.
const bytes = 64 << 20;
const data = new Uint8Array(bytes).fill(1);
const dst = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
const upload: string[][] = [];
for (let r = 0; r < 3; r++) {
  await device.queue.onSubmittedWorkDone();
  let t = performance.now();
  const staging = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.COPY_SRC,
    mappedAtCreation: true,
  });
  new Uint8Array(staging.getMappedRange()).set(data);
  staging.unmap();
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(staging, 0, dst, 0, bytes);
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  staging.destroy();
  const mapped = performance.now() - t;
  t = performance.now();
  device.queue.writeBuffer(dst, 0, data);
  device.queue.submit([]);
  await device.queue.onSubmittedWorkDone();
  upload.push([`${r + 1}`, mapped.toFixed(1), (performance.now() - t).toFixed(1)]);
}
console.log("\nupload of 64 MiB (ms, until the GPU has it)");
console.log(table(["run", "mapped at creation + copy", "queue.writeBuffer"], upload));
await gpu.check(); // a validation error (a dispatch over the limits, say) would void the numbers
work.destroy();
dst.destroy();
