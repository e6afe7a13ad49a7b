import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";

import { getGpu, Gpu, readF32, upload } from "../lib/gpu/mod.ts";
import { BufferPool, sizeClass } from "../lib/gpu/pool.ts";
import { DeviceAdvice, explainDeviceError } from "../lib/cli/errors.ts";
import { Tensor } from "../lib/tensor/tensor.ts";
import { scale } from "./tensor_helpers.ts";

function includes(text: string, part: string): void {
  assert(text.includes(part), `${JSON.stringify(text)} does not include ${JSON.stringify(part)}`);
}

/** A pool on a stand-in device with the given limits: nothing is allocated. */
function fakePool(maxBufferSize: number, maxStorageBufferBindingSize: number): BufferPool {
  const device = {
    limits: { maxBufferSize, maxStorageBufferBindingSize },
    createBuffer: ({ size, usage, label }: GPUBufferDescriptor) => ({ size, usage, label: label ?? "" }),
  };
  return new BufferPool(device as unknown as GPUDevice);
}

Deno.test("a size class never rounds past the device's largest buffer", () => {
  const most = 2 ** 31 - 1; // lavapipe's maxBufferSize; its bindings stop at 128 MiB
  const bytes = 2 ** 31 - 2 ** 26; // 1.9375 GiB: fits, but its class is 2 GiB
  assert(sizeClass(bytes) > most);
  assertEquals(sizeClass(bytes, 2 ** 27, most), bytes);
  assertEquals(
    sizeClass(2 ** 20 + 4, 2 ** 27, most),
    sizeClass(2 ** 20 + 4),
    "smaller requests keep their class",
  );
  const pool = fakePool(most, 2 ** 27);
  assertEquals(pool.acquire(bytes).size, bytes);
});

Deno.test("a buffer over the device's largest: the requested bytes, the tensor's name, and advice", async () => {
  const pool = fakePool(1000, 1000);
  const e = assertThrows(() => pool.acquire(1001, undefined, "h.ffn"));
  includes(e.message, "buffer 'h.ffn' of 1001 bytes is over this device's largest buffer (1000 bytes)");
  const advice = explainDeviceError(e, ["batch-size", "seq-len", "grad-accum", "resume"]);
  assert(advice instanceof DeviceAdvice, `no advice for: ${e.message}`);
  includes(advice.message, "Lower --batch-size");
  includes(advice.message, "--grad-accum");
  includes(advice.message, "lower --seq-len");
  includes(advice.message, "1001 bytes");
  // an intermediate tensor (no label given) is named by its shape and dtype
  const gpu = await getGpu();
  const real = gpu.pool;
  Object.defineProperty(gpu, "pool", { value: fakePool(1000, 1000), configurable: true });
  try {
    const err = assertThrows(() => Tensor.empty(gpu, [16, 64], "f32"));
    includes(err.message, "'f32[16, 64]' of 4096 bytes");
  } finally {
    Object.defineProperty(gpu, "pool", { value: real, configurable: true });
  }
});

Deno.test("a dispatch over the workgroup limit or with the wrong binding count names its kernel", async () => {
  const gpu = await getGpu();
  const x = gpu.pool.acquire(256), y = gpu.pool.acquire(256);
  const p = new Uint32Array(4);
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  assertThrows(() => gpu.stream.dispatch(scale, [x, y], max + 1, p), `${scale.name}: `);
  assertThrows(() => gpu.stream.dispatch(scale, [x, y], [1, max + 1], p), "workgroups");
  assertThrows(
    () => gpu.stream.dispatch(scale, [x], 1, p),
    `${scale.name}: 2 bindings given, its layout has 3`,
  );
  gpu.stream.dispatch(scale, [x, y], 1, p);
  await gpu.sync(); // nothing invalid reached the device
  gpu.pool.release(x);
  gpu.pool.release(y);
});

Deno.test("a device lost for another reason is reported at the next check", async () => {
  const shared = await getGpu();
  const device = await shared.adapter.requestDevice();
  let lose!: (info: GPUDeviceLostInfo) => void;
  const lost = new Promise<GPUDeviceLostInfo>((resolve) => lose = resolve);
  // the real device, but for a `lost` that this test resolves
  const stand = new Proxy(device, {
    get: (t, k) => {
      if (k === "lost") return lost;
      const v = Reflect.get(t, k, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
  const gpu = new Gpu(shared.adapter, stand, "test");
  lose({ reason: "unknown", message: "the driver reset" } as unknown as GPUDeviceLostInfo);
  await lost;
  const e = await assertRejects(() => gpu.check(), Error, "GPU device was lost (unknown): the driver reset");
  assert(explainDeviceError(e) instanceof DeviceAdvice);
  await assertRejects(() => readF32(gpu, upload(gpu, new Float32Array(4)), 4), Error, "GPU device was lost");
  device.destroy();
});

Deno.test("after a device loss readbacks say so and getGpu opens a new device", async () => {
  const gpu = await getGpu();
  const b = upload(gpu, new Float32Array([1, 2, 3, 4]));
  assertEquals([...await readF32(gpu, b, 4)], [1, 2, 3, 4]);
  gpu.device.destroy();
  const e = await assertRejects(() => readF32(gpu, b, 4), Error, "GPU device was lost (destroyed)");
  const advice = explainDeviceError(e, ["batch-size", "resume"]);
  assert(advice instanceof DeviceAdvice);
  includes(advice.message, "Resume with --resume");
  await gpu.check(); // a deliberate destroy is no error by itself
  const fresh = await getGpu();
  assert(fresh !== gpu, "a new device after the loss");
  const c = upload(fresh, new Float32Array([5, 6]));
  assertEquals([...await readF32(fresh, c, 2)], [5, 6]);
});
