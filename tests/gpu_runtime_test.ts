import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { getGpu, GpuTimer, KernelCompileError, readF32, upload } from "../lib/gpu/mod.ts";
import { sizeClass } from "../lib/gpu/pool.ts";
import { params, scale } from "./tensor_helpers.ts";

Deno.test("device requests the adapter's limits", async () => {
  const gpu = await getGpu();
  assertEquals(gpu.limits.maxStorageBufferBindingSize, gpu.adapter.limits.maxStorageBufferBindingSize);
  assertEquals(gpu.limits.maxComputeWorkgroupStorageSize, gpu.adapter.limits.maxComputeWorkgroupStorageSize);
  assertEquals(gpu.f16, gpu.adapter.features.has("shader-f16"));
});

Deno.test("dispatches with params in one submit, bind groups reused", async () => {
  const gpu = await getGpu();
  const n = 1001;
  const x = upload(gpu, Float32Array.from({ length: n }, (_, i) => i));
  const y = gpu.pool.acquire(n * 4);
  const submits = gpu.submits;
  gpu.stream.dispatch(scale, [x, y], Math.ceil(n / 64), params(n, 2));
  gpu.stream.dispatch(scale, [y, y.size > 0 ? gpu.pool.acquire(n * 4) : y], Math.ceil(n / 64), params(n, 3));
  const out = await readF32(gpu, y, n);
  assertEquals(gpu.submits, submits + 1);
  for (let i = 0; i < n; i++) assertEquals(out[i], 2 * i);
  const before = gpu.stream.bindGroupsCreated;
  gpu.stream.dispatch(scale, [x, y], Math.ceil(n / 64), params(n, 5));
  const again = await readF32(gpu, y, n);
  assertEquals(again[7], 35);
  assertEquals(gpu.stream.bindGroupsCreated, before, "same buffers and param slot: no new bind group");
});

Deno.test("dispatches of one kernel on the same buffers share a bind group: the params' offset is dynamic", async () => {
  const gpu = await getGpu();
  const n = 300;
  const x = upload(gpu, Float32Array.from({ length: n }, (_, i) => i));
  const ys = [gpu.pool.acquire(n * 4), gpu.pool.acquire(n * 4)];
  gpu.stream.dispatch(scale, [x, ys[0]], Math.ceil(n / 64), params(n, 1));
  const before = gpu.stream.bindGroupsCreated;
  // twenty dispatches in one submit, each with its own parameters (its own arena offset)
  for (let s = 1; s <= 20; s++) gpu.stream.dispatch(scale, [x, ys[s % 2]], Math.ceil(n / 64), params(n, s));
  const [even, odd] = [await readF32(gpu, ys[0], n), await readF32(gpu, ys[1], n)];
  assertEquals([even[7], odd[7]], [7 * 20, 7 * 19], "each dispatch read its own parameters");
  assertEquals(gpu.stream.bindGroupsCreated - before, 1, "one new bind group (the second output buffer)");
  // a kernel laid out otherwise (no uniform) still runs, with WebGPU's own layout
  const copy = {
    name: "test.copy",
    code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { if (g.x < 300u) { y[g.x] = x[g.x]; } }`,
  };
  assert(!gpu.pipelines.layout(gpu.pipelines.get(copy)).dynamicUniform, "no uniform: auto layout");
  assert(
    gpu.pipelines.layout(gpu.pipelines.get(scale)).dynamicUniform,
    "storage then a uniform: explicit layout",
  );
  gpu.stream.dispatch(copy, [x, ys[0]], Math.ceil(n / 64));
  assertEquals((await readF32(gpu, ys[0], n))[299], 299);
});

Deno.test("stream.write lands in stream order", async () => {
  const gpu = await getGpu();
  const a = upload(gpu, new Float32Array([1, 2, 3, 4]));
  const b = gpu.pool.acquire(16);
  gpu.stream.dispatch(scale, [a, b], 1, params(4, 10));
  gpu.stream.write(a, new Float32Array([5, 6, 7, 8])); // after the dispatch has read a
  const c = gpu.pool.acquire(16);
  gpu.stream.dispatch(scale, [a, c], 1, params(4, 1));
  assertEquals([...await readF32(gpu, b, 4)], [10, 20, 30, 40]);
  assertEquals([...await readF32(gpu, c, 4)], [5, 6, 7, 8]);
});

Deno.test("pool reuse is stream-ordered: a released buffer serves later work of the same submit", async () => {
  const gpu = await getGpu();
  const a = upload(gpu, new Float32Array([1, 2, 3, 4]));
  const b = gpu.pool.acquire(16);
  gpu.stream.dispatch(scale, [a, b], 1, params(4, 10)); // reads a
  gpu.pool.release(a);
  const c = gpu.pool.acquire(16);
  assert(c === a, "reused at once");
  gpu.stream.write(c, new Float32Array([5, 6, 7, 8])); // lands after the dispatch read a
  const d = gpu.pool.acquire(16);
  gpu.stream.dispatch(scale, [c, d], 1, params(4, 1));
  assertEquals([...await readF32(gpu, b, 4)], [10, 20, 30, 40]);
  assertEquals([...await readF32(gpu, d, 4)], [5, 6, 7, 8]);
  for (const x of [b, c, d]) gpu.pool.release(x);
  assertEquals(sizeClass(1), 16);
  assertEquals(sizeClass(1000), 1024);
  assertEquals(sizeClass(70000), 73728);
  // never past a device's largest binding when the request fits under it (2³¹ − 4 on an H100)
  assertEquals(sizeClass(2_100_000_001), 2 ** 31);
  assertEquals(sizeClass(2_100_000_001, 2 ** 31 - 4), 2_100_000_004);
  assertEquals(sizeClass(70000, 72000), 70000);
  assertEquals(sizeClass(49152, 49152), 49152, "a power of two past the binding");
  // a reused buffer is named by its new owner in errors (a GPUBuffer keeps its first label)
  const first = gpu.pool.acquire(1 << 20, undefined, "first owner");
  gpu.pool.release(first);
  const second = gpu.pool.acquire(1 << 20, undefined, "second owner");
  assertEquals(second, first);
  assertEquals(gpu.pool.labelOf(second), "second owner");
  gpu.pool.release(second);
  const most = gpu.limits.maxBufferSize;
  assertThrows(() => gpu.pool.acquire(most + 1, undefined, "logits"), `buffer 'logits' of`);
});

Deno.test("pool hands out the oldest free buffer of a size first, whatever the release order", async () => {
  const gpu = await getGpu();
  await gpu.sync();
  gpu.pool.trim(); // no free buffers of any size
  const size = 12_345 * 4;
  const [x, y, z] = [0, 1, 2].map(() => gpu.pool.acquire(size));
  for (const b of [z, x, y]) gpu.pool.release(b);
  const again = [0, 1, 2].map(() => gpu.pool.acquire(size));
  assert(again[0] === x && again[1] === y && again[2] === z, "oldest first");
  for (const b of again) gpu.pool.release(b);
});

Deno.test("pool.trim destroys a free buffer only once its last use is submitted", async () => {
  const gpu = await getGpu();
  await gpu.sync();
  gpu.pool.trim(); // start with no free buffers
  const size = 3 * 2 ** 20 + 4;
  const x = gpu.pool.acquire(size);
  const transfers = gpu.stream.transfers;
  gpu.stream.clear(x);
  assertEquals(gpu.stream.transfers, transfers + 1, "a clear is a transfer");
  gpu.pool.release(x);
  const before = gpu.pool.stats().allocated;
  gpu.pool.trim(); // x's clear is not even submitted: x must survive
  assertEquals(gpu.pool.stats().allocated, before);
  gpu.stream.flush();
  gpu.pool.trim(); // submitted, maybe still running: WebGPU keeps it alive until done
  assertEquals(gpu.pool.stats().allocated, before - sizeClass(size));
  await gpu.sync(); // the clear ran on a live buffer (a destroyed one is a validation error)
});

Deno.test("a large write lands in stream order: after the work encoded before it", async () => {
  const gpu = await getGpu();
  const n = 1_100_003; // over the arena's upload size (4 MiB): written by queue.writeBuffer
  const first = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const second = Float32Array.from({ length: n }, (_, i) => Math.cos(i));
  const x = upload(gpu, first);
  const y = gpu.pool.acquire(n * 4), z = gpu.pool.acquire(n * 4);
  gpu.stream.dispatch(scale, [x, y], Math.ceil(n / 64), params(n, 2)); // encoded, not submitted
  gpu.stream.write(x, second);
  gpu.stream.dispatch(scale, [x, z], Math.ceil(n / 64), params(n, 3));
  const [ys, zs] = [await readF32(gpu, y, n), await readF32(gpu, z, n)];
  assertEquals(ys.findIndex((v, i) => v !== 2 * first[i]), -1, "the first dispatch saw the old contents");
  assertEquals(zs.findIndex((v, i) => v !== Math.fround(3 * second[i])), -1, "the second saw the new");
  for (const b of [x, y, z]) gpu.pool.release(b);
});

Deno.test("a kernel that does not compile names itself and its line", async () => {
  const gpu = await getGpu();
  const bad = { name: "test.bad", code: "@compute @workgroup_size(1) fn main() {\n  let x: f32 = 1u;\n}" };
  const err = await assertRejects(() => gpu.pipelines.compile(bad), KernelCompileError);
  assert(err.message.includes("test.bad") && err.message.includes("line 2"), err.message);
});

Deno.test("timer measures intervals", async () => {
  const gpu = await getGpu();
  const t = new GpuTimer(gpu);
  const x = upload(gpu, new Float32Array(1 << 16));
  const y = gpu.pool.acquire(1 << 18);
  await t.mark();
  for (let i = 0; i < 4; i++) gpu.stream.dispatch(scale, [x, y], 1024, params(1 << 16, 1));
  await t.mark();
  const [ms] = await t.read();
  assert(ms > 0 && ms < 10000, `interval ${ms}`);
});

Deno.test("kernel profile: time and count per kernel name, results unchanged", async () => {
  const gpu = await getGpu();
  if (!gpu.timestamps) return; // the profile needs timestamp-query
  const other = { ...scale, name: "test.scale_again", code: scale.code + "\n" };
  const n = 1 << 12;
  const x = upload(gpu, Float32Array.from({ length: n }, (_, i) => i));
  const y = gpu.pool.acquire(n * 4), z = gpu.pool.acquire(n * 4);
  gpu.stream.startProfile(4); // room for two dispatches: the reads are queued in three parts
  for (let i = 0; i < 3; i++) gpu.stream.dispatch(scale, [x, y], n / 64, params(n, 2));
  gpu.stream.dispatch(other, [y, z], n / 64, params(n, 3));
  const kernels = await gpu.stream.stopProfile();
  assertEquals(kernels.map((k) => [k.name, k.count]).sort(), [["test.scale", 3], ["test.scale_again", 1]]);
  for (const k of kernels) assert(k.ms >= 0 && k.ms < 10000, `${k.name}: ${k.ms} ms`);
  assertEquals((await readF32(gpu, z, n))[5], 30, "profiled dispatches compute as usual");
  await assertRejects(() => gpu.stream.stopProfile(), Error);
  for (const b of [x, y, z]) gpu.pool.release(b);
});
