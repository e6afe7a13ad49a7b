/**
 * Compute pipelines, compiled once per (WGSL source, entry point). Compilation is synchronous
 * for the caller; a compile error is reported asynchronously, with the kernel's name and the
 * offending WGSL lines, at the next {@link Gpu.check} (every readback checks).
 *
 * A kernel whose group 0 holds storage buffers and, last, one uniform (as every kernel here
 * declares them) gets an explicit layout in which the uniform has a dynamic offset: the stream
 * then binds its parameter arena once and passes each dispatch's offset, so one bind group
 * serves every dispatch of the kernel on the same buffers. (With WebGPU's "auto" layout each
 * dispatch's own offset made a new bind group, ≈ 12 µs of CPU each.)
 * @module
 */
import type { Gpu } from "./device.ts";

/** A WGSL compute kernel: a name for errors and profiles, its source, and an entry point. */
export interface Kernel {
  /** A short name, e.g. `fht.stage_r8`; shows up in errors. */
  readonly name: string;
  /** The complete WGSL module. */
  readonly code: string;
  /** The entry point; `main` when omitted. */
  readonly entryPoint?: string;
}

/** Raised for a kernel that does not compile; names the kernel and quotes its WGSL lines. */
export class KernelCompileError extends Error {
  /** The error's name, "KernelCompileError". */
  override name = "KernelCompileError";
}

/** Format compile messages with the source lines they point at. */
export function formatCompileMessages(
  kernel: Kernel,
  messages: readonly { type: string; lineNum: number; message: string }[],
): string {
  const lines = kernel.code.split("\n");
  const parts = messages.filter((m) => m.type === "error").map((m) => {
    const text = m.message.trim().split("\n")[0];
    const src = m.lineNum > 0 ? `\n    ${m.lineNum} | ${lines[m.lineNum - 1]?.trim() ?? ""}` : "";
    return `  line ${m.lineNum}: ${text}${src}`;
  });
  return `kernel '${kernel.name}' failed to compile:\n${parts.join("\n")}`;
}

const BINDING = /@group\((\d+)\)\s*@binding\((\d+)\)\s*var<\s*(uniform|storage\s*,\s*(read|read_write))\s*>/g;

/**
 * Group 0's layout from the kernel's declarations when they are bindings 0..n-1 of storage
 * buffers with one uniform last: the uniform with a dynamic offset. Null for any other shape.
 */
function explicitLayout(
  device: GPUDevice,
  kernel: Kernel,
): { group: GPUBindGroupLayout; bindings: number } | null {
  const found = [...kernel.code.matchAll(BINDING)];
  const declared = kernel.code.match(/@binding\(/g)?.length ?? 0;
  if (found.length === 0 || found.length !== declared || found.some((m) => m[1] !== "0")) return null;
  const bindings = found.map((m) => ({
    index: Number(m[2]),
    uniform: m[3] === "uniform",
    writes: m[4] === "read_write",
  }))
    .sort((a, b) => a.index - b.index);
  const last = bindings.length - 1;
  if (bindings.some((b, i) => b.index !== i || b.uniform !== (i === last))) return null;
  const group = device.createBindGroupLayout({
    label: kernel.name,
    entries: bindings.map((b): GPUBindGroupLayoutEntry => ({
      binding: b.index,
      visibility: GPUShaderStage.COMPUTE,
      buffer: b.uniform
        ? { type: "uniform", hasDynamicOffset: true }
        : { type: b.writes ? "storage" : "read-only-storage" },
    })),
  });
  return { group, bindings: bindings.length };
}

/**
 * Group 0's layout of a pipeline: whether its last binding is a uniform with a dynamic offset,
 * and its binding count (-1 for WebGPU's "auto" layout, which leaves out unused bindings).
 */
export interface GroupLayout {
  /** The bind group layout. */
  group: GPUBindGroupLayout;
  /** The last binding is a uniform bound with a dynamic offset. */
  dynamicUniform: boolean;
  /** Bindings in the group, or -1 for an "auto" layout. */
  bindings: number;
}

/** Pipeline cache of one device. */
export class PipelineCache {
  #pipelines = new Map<string, GPUComputePipeline>();
  /** Fast path for memoised kernel objects: no rehash of the WGSL source per dispatch. */
  #byKernel = new WeakMap<Kernel, GPUComputePipeline>();
  #pending = new Set<Promise<void>>();
  #ids = new WeakMap<GPUComputePipeline, number>();
  #layouts = new WeakMap<GPUComputePipeline, GroupLayout>();

  /** An empty cache for `gpu`'s device (each {@link Gpu} makes its own). */
  constructor(private readonly gpu: Gpu) {}

  /** Number of distinct pipelines compiled so far. */
  get size(): number {
    return this.#pipelines.size;
  }

  /** A small integer identifying a pipeline (for bind-group cache keys). */
  id(pipeline: GPUComputePipeline): number {
    return this.#ids.get(pipeline)!;
  }

  /**
   * The layout of a pipeline's group 0, and whether its last binding is a uniform with a
   * dynamic offset (see the module doc).
   */
  layout(pipeline: GPUComputePipeline): GroupLayout {
    return this.#layouts.get(pipeline)!;
  }

  /** The pipeline for `kernel`, compiled on first use. */
  get(kernel: Kernel): GPUComputePipeline {
    const known = this.#byKernel.get(kernel);
    if (known) return known;
    const entryPoint = kernel.entryPoint ?? "main";
    const key = `${entryPoint}\u0000${kernel.code}`;
    let pipeline = this.#pipelines.get(key);
    if (pipeline) {
      this.#byKernel.set(kernel, pipeline);
      return pipeline;
    }
    const { device } = this.gpu;
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code: kernel.code, label: kernel.name });
    const explicit = explicitLayout(device, kernel);
    pipeline = device.createComputePipeline({
      label: kernel.name,
      layout: explicit ? device.createPipelineLayout({ bindGroupLayouts: [explicit.group] }) : "auto",
      compute: { module, entryPoint },
    });
    this.#layouts.set(pipeline, {
      group: explicit?.group ?? pipeline.getBindGroupLayout(0),
      dynamicUniform: explicit !== null,
      bindings: explicit?.bindings ?? -1,
    });
    const done = device.popErrorScope().then(async (error) => {
      if (!error) return;
      const info = await module.getCompilationInfo();
      const msg = info.messages.some((m) => m.type === "error")
        ? formatCompileMessages(kernel, info.messages)
        : `kernel '${kernel.name}' failed to build: ${error.message.trim()}`;
      this.gpu.report(new KernelCompileError(msg));
    });
    this.#pending.add(done);
    done.finally(() => this.#pending.delete(done));
    this.#ids.set(pipeline, this.#pipelines.size);
    this.#pipelines.set(key, pipeline);
    this.#byKernel.set(kernel, pipeline);
    return pipeline;
  }

  /** Compile `kernel` now and throw {@link KernelCompileError} if it does not compile. */
  async compile(kernel: Kernel): Promise<GPUComputePipeline> {
    const pipeline = this.get(kernel);
    await this.gpu.check();
    return pipeline;
  }

  /** Resolves when every compile started so far has reported. */
  async settled(): Promise<void> {
    await Promise.all([...this.#pending]);
  }
}
