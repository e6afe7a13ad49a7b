/**
 * `hartley info`: what WebGPU device hartley would use and what it offers.
 * @module
 */
import { bindingLimit } from "../gpu/bands.ts";
import { getGpu } from "../gpu/device.ts";
import { type CommandSpec, withArgs } from "./args.ts";
import { MAX_BINDING_ENV } from "./environment.ts";

const SPEC: CommandSpec<Record<never, never>> = {
  name: "info",
  summary: "Show the WebGPU adapter hartley uses, its features and the limits it requested.",
  flags: {},
  notes: `With ${MAX_BINDING_ENV} set (e.g. 128MiB), it also shows the storage-binding limit runs plan for.`,
};

/** Print the adapter, its features and the limits hartley requested. */
export function infoCommand(args: string[]): Promise<number> {
  return withArgs(SPEC, args, printInfo);
}

async function printInfo(): Promise<number> {
  const gpu = await getGpu();
  const l = gpu.limits;
  const mib = (b: number) => b < 2 ** 20 ? `${(b / 1024).toFixed(0)} KiB` : `${(b / 2 ** 20).toFixed(0)} MiB`;
  console.log(`adapter:   ${gpu.description}`);
  console.log(
    `features:  shader-f16 ${gpu.f16 ? "yes" : "no"}, timestamp-query ${gpu.timestamps ? "yes" : "no"}`,
  );
  const planned = bindingLimit(gpu);
  const lowered = planned < l.maxStorageBufferBindingSize
    ? ` (planned for ${mib(planned)}: ${MAX_BINDING_ENV})`
    : "";
  console.log(
    `buffers:   max ${mib(l.maxBufferSize)}, storage binding ${mib(l.maxStorageBufferBindingSize)}${lowered}`,
  );
  console.log(
    `workgroup: ${
      l.maxComputeWorkgroupStorageSize / 1024
    } KiB shared, ${l.maxComputeInvocationsPerWorkgroup} invocations`,
  );
  return 0;
}
