import { assertRejects } from "./assert.ts";
import { GpuUnavailableError, openGpu } from "../lib/gpu/device.ts";

Deno.test("no adapter: the error says how to get one", async () => {
  const gpu = navigator.gpu;
  const original = gpu.requestAdapter;
  Object.defineProperty(gpu, "requestAdapter", { value: () => Promise.resolve(null), configurable: true });
  try {
    await assertRejects(() => openGpu(), GpuUnavailableError, "mesa-vulkan-drivers");
    await assertRejects(() => openGpu(), GpuUnavailableError, "libglvnd0"); // NVIDIA's driver needs it
  } finally {
    Object.defineProperty(gpu, "requestAdapter", { value: original, configurable: true });
  }
});
