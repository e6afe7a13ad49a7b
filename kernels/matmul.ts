/**
 * WGSL for the register-tiled matmul `C = A·B` (and its split-K reduction), generated per
 * variant. A workgroup computes a `bm × bn` block of C from `bk`-deep slices of A and B staged
 * in workgroup memory; each invocation owns a `tm × tn` register tile. The register tile is
 * emitted as NAMED variables with every loop over it unrolled here in TypeScript: indexing a
 * function-local array with a runtime index would move it to slow local memory (SPEC §3).
 *
 * Layout inside a workgroup: invocation (tx, ty) owns rows `g·(bm/ga) + ty·wa + [0, wa)` for
 * each of `ga = tm/wa` row groups (wa = min(4, tm)) and likewise columns in `gb` groups of
 * `wb`, so the vec4 reads of one k-row of the shared tiles are contiguous across a warp
 * (conflict-free) and the stores of C are coalesced. Shared tiles are stored k-major
 * (`sA[k][m]`, `sB[k][n]`); an operand whose global layout is k-contiguous is transposed on
 * its way in, and its shared rows get 4 floats of padding so those scalar stores spread
 * over the banks.
 *
 * Operands are addressed through {@link MATMUL_PARAMS} (row strides, offsets, batch and head
 * strides), so one kernel serves packed matrices and attention's heads in place; the epilogue
 * applies alpha, the bias, accumulation or an activation (forward, or its derivative times the
 * result going backward) as it stores.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";
import type { QuantKind } from "../lib/tensor/quant_format.ts";
import { MATH } from "./elementwise.ts";
import { unpackFour } from "./quant.ts";

/** The blocking of one matmul kernel. */
export interface MatmulTile {
  /** Rows of C per workgroup (multiple of 4 and of `tm`). */
  readonly bm: number;
  /** Columns of C per workgroup (multiple of 4 and of `tn`). */
  readonly bn: number;
  /** Depth of one K step staged in workgroup memory (multiple of 4). */
  readonly bk: number;
  /** Rows of the register tile of one invocation: 1, 2 or a multiple of 4. */
  readonly tm: number;
  /** Columns of the register tile of one invocation: 1, 2 or a multiple of 4. */
  readonly tn: number;
  /** 2: double-buffered shared tiles (one barrier per K step); 1: single (two barriers). */
  readonly buffers: 1 | 2;
  /** Tile rows walked together before moving right (L2 reuse of the B panel); default 8. */
  readonly group?: number;
}

/** Everything that changes the generated WGSL of the main kernel. */
export interface MatmulVariant {
  readonly tile: MatmulTile;
  /** A stored (k, m). */
  readonly transA: boolean;
  /** B stored (n, k). */
  readonly transB: boolean;
  /** A read as vec4 (its contiguous dimension is a multiple of 4). */
  readonly vecA: boolean;
  /** B read as vec4. */
  readonly vecB: boolean;
  /** C written as vec4 (n is a multiple of 4 and tn ≥ 4). */
  readonly vecC: boolean;
  /** B stored as f16 (computed in f32). */
  readonly f16B: boolean;
  /**
   * With `f16B` and `vecB`: B's four halves are loaded as two u32 and unpacked with
   * `unpack2x16float` (no f16 types in the shader), not as a `vec4<f16>`.
   */
  readonly f16Packed?: boolean;
  /**
   * B stored quantized (codes, and group scales bound after the epilogue's buffers), turned
   * into f32 at the shared store; needs `vecB`.
   */
  readonly quantB?: QuantKind;
  /** Add a bias row (binding 3). Ignored for `partial`. */
  readonly bias: boolean;
  /** C += result. Ignored for `partial`. */
  readonly accumulate: boolean;
  /** Split-K partial: write the raw sums of this K chunk to slice `z` of a scratch buffer. */
  readonly partial: boolean;
  /**
   * An activation in the epilogue (never with `partial` or `accumulate`), with a pre-activation
   * buffer bound after the bias: forward stores act(result) in C and, with `keepPre`, the
   * result in the buffer; `backward` reads it and stores result·act′(pre) in C.
   */
  readonly activation?: {
    readonly kind: EpilogueActivation;
    readonly backward: boolean;
    readonly keepPre?: boolean;
  };
}

/** Activations a matmul epilogue applies (hf_config's `Activation`). */
export type EpilogueActivation = "gelu" | "gelu_tanh" | "relu" | "silu";

/** WGSL `act_(x)` and `act_back_(v, x)` = v·act′(x) for an epilogue activation (MATH in scope). */
export const ACTIVATION_CODE: Record<EpilogueActivation, string> = {
  gelu: "fn act_(x: f32) -> f32 { return gelu_(x); }\n" +
    "fn act_back_(v: f32, x: f32) -> f32 { return v * gelu_grad_(x); }",
  gelu_tanh: "fn act_(x: f32) -> f32 { return gelu_tanh_(x); }\n" +
    "fn act_back_(v: f32, x: f32) -> f32 { return v * gelu_tanh_grad_(x); }",
  relu: "fn act_(x: f32) -> f32 { return max(x, 0.0); }\n" +
    "fn act_back_(v: f32, x: f32) -> f32 { return select(0.0, v, x > 0.0); }",
  silu: "fn act_(x: f32) -> f32 { return x * sigmoid_(x); }\n" +
    "fn act_back_(v: f32, x: f32) -> f32 { return v * silu_grad_(x); }",
};

/** Invocations per workgroup of a tile. */
export function tileThreads(t: MatmulTile): number {
  return (t.bm / t.tm) * (t.bn / t.tn);
}

/** Row padding (floats) of the shared tile of an operand that is transposed on its way in. */
function pad(kContiguous: boolean): number {
  return kContiguous ? 4 : 0;
}

/** Workgroup-memory bytes a variant uses. */
export function tileSharedBytes(t: MatmulTile, transA: boolean, transB: boolean): number {
  return 4 * t.buffers * t.bk * (t.bm + pad(!transA) + t.bn + pad(transB));
}

/** Why a tile cannot be generated, or null when it can. */
export function tileProblem(t: MatmulTile): string | null {
  const widthOk = (w: number) => w === 1 || w === 2 || (w > 0 && w % 4 === 0);
  if (![t.bm, t.bn, t.bk, t.tm, t.tn].every((v) => Number.isInteger(v) && v > 0)) {
    return "all of bm, bn, bk, tm, tn must be positive integers";
  }
  if (!widthOk(t.tm) || !widthOk(t.tn)) {
    return `tm (${t.tm}) and tn (${t.tn}) must be 1, 2 or a multiple of 4`;
  }
  if (t.bm % 4 || t.bn % 4 || t.bk % 4) {
    return `bm (${t.bm}), bn (${t.bn}), bk (${t.bk}) must be multiples of 4`;
  }
  if (t.bm % t.tm || t.bn % t.tn) return `bm must be a multiple of tm and bn of tn`;
  if (t.buffers !== 1 && t.buffers !== 2) return `buffers must be 1 or 2, not ${t.buffers}`;
  if (t.group !== undefined && !(Number.isInteger(t.group) && t.group > 0)) {
    return "group must be a positive integer";
  }
  return null;
}

const XYZW = ["x", "y", "z", "w"];

/** `vec{w}<f32>` (f32 for w = 1). */
function vecType(w: number): string {
  return w === 1 ? "f32" : `vec${w}<f32>`;
}

/** Component `j` of a register of width `w`. */
function comp(name: string, w: number, j: number): string {
  return w === 1 ? name : `${name}.${XYZW[j]}`;
}

/** How one operand moves from global to shared memory and from there into registers. */
interface Operand {
  /** Lower-case letter: a or b. */
  readonly x: string;
  /** Block extent along m (A) or n (B). */
  readonly tile: number;
  /** The global layout runs along k (A not transposed, B transposed). */
  readonly kContiguous: boolean;
  /** Global loads are vec4. */
  readonly vec: boolean;
  readonly f16: boolean;
  /** f16 vec4 units loaded as `vec2<u32>` and unpacked (see {@link MatmulVariant.f16Packed}). */
  readonly packed: boolean;
  /** Quantized storage (vec4 loads only). */
  readonly quant?: QuantKind;
  /** Register read width from shared memory (4 → the shared array holds vec4). */
  readonly w: number;
  /** Register groups per invocation (tm/w or tn/w). */
  readonly groups: number;
  /** WGSL of the global extent along m or n. */
  readonly outer: string;
  /** WGSL of the global row stride (elements between stored rows). */
  readonly ld: string;
  /** WGSL of the invocation's index along m (ty) or n (tx). */
  readonly lane: string;
}

/** Generator of one operand's declarations and per-step code. */
class OperandCode {
  readonly stride: number;
  readonly sharedVec: boolean;
  readonly units: number;
  readonly perThread: number;
  readonly v: number;

  constructor(readonly o: Operand, readonly bk: number, readonly threads: number, readonly buffers: number) {
    this.stride = o.tile + pad(o.kContiguous);
    this.sharedVec = o.w === 4;
    this.v = o.vec ? 4 : 1;
    this.units = (o.tile * bk) / this.v;
    this.perThread = Math.ceil(this.units / threads);
    if (o.quant && !o.vec) throw new Error(`matmul: a ${o.quant} operand must be read as vec4`);
  }

  get sharedName(): string {
    return `s${this.o.x.toUpperCase()}`;
  }

  /** Elements (vec4 or f32) of one shared buffer. */
  get bufferElems(): number {
    return (this.bk * this.stride) / (this.sharedVec ? 4 : 1);
  }

  declarations(binding: number): string {
    const { x, f16, quant } = this.o;
    const scalar = f16 ? "f16" : "f32";
    const elem = quant ? "u32" : this.#packed ? "vec2<u32>" : this.o.vec ? `vec4<${scalar}>` : scalar;
    const shared = this.sharedVec ? "vec4<f32>" : "f32";
    return `@group(0) @binding(${binding}) var<storage, read> ${x}: array<${elem}>;\n` +
      `var<workgroup> ${this.sharedName}: array<${shared}, ${this.bufferElems * this.buffers}>;`;
  }

  /** Per-invocation constants: for each load unit, its (k, outer) offsets and global base. */
  setup(origin: string, base: string): string[] {
    const { x, kContiguous, outer, ld } = this.o;
    const { v, units, threads } = this;
    const lines: string[] = [];
    // Units are v-wide chunks along the contiguous dimension, numbered row by row.
    const cols = kContiguous ? this.bk / v : this.o.tile / v;
    for (let i = 0; i < this.perThread; i++) {
      const u = `${x}u${i}`;
      lines.push(`let ${u} = lid + ${i * threads}u;`);
      const inUnits = (i + 1) * threads > units ? ` && ${u} < ${units}u` : "";
      // r: row of the global slice, c: first element of the chunk along the contiguous dim.
      lines.push(`let ${x}r${i} = ${u} / ${cols}u;`, `let ${x}c${i} = (${u} % ${cols}u) * ${v}u;`);
      if (kContiguous) {
        // rows are m (or n), chunks run along k
        lines.push(`let ${x}ok${i} = ${origin} + ${x}r${i} < ${outer}${inUnits};`);
        lines.push(`let ${x}g${i} = ${base} + (${origin} + ${x}r${i}) * ${ld} + ${x}c${i};`);
        lines.push(`let ${x}dk${i} = ${x}c${i};`);
      } else {
        // rows are k, chunks run along m (or n)
        lines.push(`let ${x}ok${i} = ${origin} + ${x}c${i} < ${outer}${inUnits};`);
        lines.push(`let ${x}g${i} = ${base} + ${x}r${i} * ${ld} + ${origin} + ${x}c${i};`);
        lines.push(`let ${x}dk${i} = ${x}r${i};`);
      }
    }
    return lines;
  }

  /** A quantized operand's scales (`${x}s`), or nothing. */
  scaleDeclaration(binding: number): string {
    return this.o.quant
      ? `@group(0) @binding(${binding}) var<storage, read> ${this.o.x}s: array<f32>;\n`
      : "";
  }

  /** Prefetch registers (declared once): the stored unit, and a quantized unit's scale. */
  registers(): string[] {
    const x = this.o.x;
    return Array.from(
      { length: this.perThread },
      (_, i) => `var ${x}p${i}: ${this.#regType()};${this.o.quant ? ` var ${x}q${i}: f32;` : ""}`,
    );
  }

  /**
   * A prefetch register's type: the stored element (f16 and quantized operands convert at the
   * shared store; a quantized unit keeps its four codes in the low bits of a u32).
   */
  #regType(): string {
    if (this.o.quant) return "u32";
    if (this.#packed) return "vec2<u32>";
    const scalar = this.o.f16 ? "f16" : "f32";
    return this.v === 4 ? `vec4<${scalar}>` : scalar;
  }

  /** Units are four halves in two u32, unpacked at the shared store. */
  get #packed(): boolean {
    return this.o.packed && this.o.f16 && this.v === 4;
  }

  /** Units that are unpacked once at the shared store (quantized codes, packed halves). */
  get #unpacked(): boolean {
    return !!this.o.quant || this.#packed;
  }

  /** A scalar of a prefetch register as f32. */
  #f32(value: string): string {
    return this.o.f16 ? `f32(${value})` : value;
  }

  /** Prefetch register i (a vec4 unit) as vec4<f32>. */
  #vec4f32(i: number): string {
    const { x, f16, quant } = this.o;
    if (quant) return unpackFour(quant, `${x}p${i}`, `${x}q${i}`);
    if (this.#packed) return `vec4<f32>(unpack2x16float(${x}p${i}.x), unpack2x16float(${x}p${i}.y))`;
    return f16 ? `vec4<f32>(${x}p${i})` : `${x}p${i}`;
  }

  /** Global → prefetch register i from element `idx`. */
  #read(i: number, idx: string): string {
    const { x, quant } = this.o;
    if (quant === "q8") return `${x}p${i} = ${x}[(${idx}) / 4u]; ${x}q${i} = ${x}s[(${idx}) / 32u];`;
    if (quant === "q4") {
      // a unit is half a word: shift its 16 bits down
      return `${x}p${i} = ${x}[(${idx}) / 8u] >> (((${idx}) / 4u) % 2u * 16u); ${x}q${i} = ${x}s[(${idx}) / 32u];`;
    }
    return `${x}p${i} = ${x}[${this.v === 4 ? `(${idx}) / 4u` : idx}];`;
  }

  /** Global → registers for the K step starting at `k0`; zero outside the matrix or chunk. */
  load(k0: string): string[] {
    const { x, kContiguous, ld } = this.o;
    const lines: string[] = [];
    // f16 stays f16 until the shared store: converting here would make the load's latency
    // visible at once instead of behind the next K step's products
    const zero = (i: number) => `${x}p${i} = ${this.#regType()}();${this.o.quant ? ` ${x}q${i} = 0.0;` : ""}`;
    for (let i = 0; i < this.perThread; i++) {
      const idx = kContiguous ? `${x}g${i} + ${k0}` : `${x}g${i} + ${k0} * ${ld}`;
      lines.push(
        `if (${x}ok${i} && ${k0} + ${x}dk${i} < kEnd) { ${this.#read(i, idx)} } else { ${zero(i)} }`,
      );
    }
    return lines;
  }

  /** Registers → shared buffer starting at float offset `buf` (a multiple of 4). */
  store(buf: string): string[] {
    const { x, kContiguous } = this.o;
    const s = this.sharedName;
    const lines: string[] = [];
    const at = (floatIdx: string, value: string, alignedVec4: boolean) => {
      if (!this.sharedVec) return `${s}[${floatIdx}] = ${value};`;
      if (alignedVec4) return `${s}[(${floatIdx}) / 4u] = ${value};`;
      return `${s}[(${floatIdx}) / 4u][(${floatIdx}) % 4u] = ${value};`;
    };
    for (let i = 0; i < this.perThread; i++) {
      const guard = (i + 1) * this.threads > this.units ? `if (${x}u${i} < ${this.units}u) ` : "";
      const body: string[] = [];
      // a quantized or packed unit is unpacked once, then stored like an f32 one
      if (this.#unpacked) body.push(`let ${x}d${i} = ${this.#vec4f32(i)};`);
      const component = (j: number) =>
        this.#unpacked ? comp(`${x}d${i}`, 4, j) : this.#f32(comp(`${x}p${i}`, this.v, j));
      if (kContiguous) {
        // chunk runs along k: one scalar store per k row (transposed)
        for (let j = 0; j < this.v; j++) {
          const f = `${buf} + (${x}c${i} + ${j}u) * ${this.stride}u + ${x}r${i}`;
          body.push(at(f, component(j), false));
        }
      } else {
        const f = `${buf} + ${x}r${i} * ${this.stride}u + ${x}c${i}`;
        if (this.v === 4 && this.sharedVec) {
          body.push(at(f, this.#unpacked ? `${x}d${i}` : this.#vec4f32(i), true));
        } else {
          for (let j = 0; j < this.v; j++) body.push(at(`${f} + ${j}u`, component(j), false));
        }
      }
      lines.push(`${guard}{ ${body.join(" ")} }`);
    }
    return lines;
  }

  /** Shared → registers `${x}${g}` for k row `kk` of the buffer at float offset `buf`. */
  read(buf: string, kk: number): string[] {
    const { x, w, groups, tile, lane } = this.o;
    const lines: string[] = [];
    for (let g = 0; g < groups; g++) {
      const off = kk * this.stride + g * (tile / groups);
      if (this.sharedVec) {
        lines.push(`let ${x}${g} = ${this.sharedName}[${buf} / 4u + ${off / 4}u + ${lane}];`);
      } else {
        const parts = Array.from(
          { length: w },
          (_, j) => `${this.sharedName}[${buf} + ${off + j}u + ${lane} * ${w}u]`,
        );
        lines.push(`let ${x}${g} = ${w === 1 ? parts[0] : `${vecType(w)}(${parts.join(", ")})`};`);
      }
    }
    return lines;
  }
}

const kernels = new Map<string, Kernel>();

/** A short name for a tile, e.g. `128x128x8_8x8_2`. */
export function tileName(t: MatmulTile): string {
  return `${t.bm}x${t.bn}x${t.bk}_${t.tm}x${t.tn}_${t.buffers}${t.group ? `g${t.group}` : ""}`;
}

/** The tile a {@link tileName} names (e.g. from a benchmark's command line), or null. */
export function parseTileName(name: string): MatmulTile | null {
  const f = /^(\d+)x(\d+)x(\d+)_(\d+)x(\d+)_([12])(?:g(\d+))?$/.exec(name);
  if (!f) return null;
  const [bm, bn, bk, tm, tn, buffers] = f.slice(1, 7).map(Number);
  const tile: MatmulTile = {
    bm,
    bn,
    bk,
    tm,
    tn,
    buffers: buffers as 1 | 2,
    ...(f[7] ? { group: Number(f[7]) } : {}),
  };
  return tileProblem(tile) ? null : tile;
}

/**
 * The uniform block shared by the main kernel and the host code (28 words). Batch entry z is
 * (outer, head) = (z / heads, z % heads); operand X's matrix starts at element
 * `offX + outer·strideX + ⌊head / groupX⌋·headX` and its stored rows are `ldX` apart, so
 * attention can read and write heads in place ([B, T, H, D]) and share K/V heads.
 */
export const MATMUL_PARAMS = `struct Params {
  m: u32, n: u32, k: u32, tilesN: u32,
  tilesM: u32, tilesMN: u32, splits: u32, kChunk: u32,
  lda: u32, ldb: u32, ldc: u32, alpha: f32,
  heads: u32, pad0: u32, pad1: u32, pad2: u32,
  offA: u32, strideA: u32, headA: u32, groupA: u32,
  offB: u32, strideB: u32, headB: u32, groupB: u32,
  offC: u32, strideC: u32, headC: u32, groupC: u32,
}`;

/**
 * The main matmul kernel of a variant. Bindings: 0 A, 1 B, 2 C, [bias], [pre-activation],
 * [B's scales], then the uniform {@link MATMUL_PARAMS}. Dispatch: x·y (linear, see `grid`) ≥ tilesM·tilesN, z = batch·splits.
 */
export function matmulKernel(v: MatmulVariant): Kernel {
  const t = v.tile;
  const problem = tileProblem(t);
  if (problem) throw new Error(`matmul tile ${JSON.stringify(t)}: ${problem}`);
  const name = `matmul.${tileName(t)}_${v.transA ? "T" : "N"}${v.transB ? "T" : "N"}` +
    `${v.vecA ? "4" : "1"}${v.vecB ? "4" : "1"}${v.vecC ? "4" : "1"}` +
    `${v.f16B ? (v.f16Packed && v.vecB ? "_hp" : "_h") : ""}${v.quantB ? `_${v.quantB}` : ""}${
      v.partial ? "_part" : `${v.bias ? "_bias" : ""}${v.accumulate ? "_acc" : ""}`
    }` +
    `${
      v.activation
        ? `_${v.activation.kind}${v.activation.backward ? "_back" : v.activation.keepPre ? "_pre" : ""}`
        : ""
    }`;
  let kernel = kernels.get(name);
  if (!kernel) {
    kernel = { name, code: generate(v) };
    kernels.set(name, kernel);
  }
  return kernel;
}

function generate(v: MatmulVariant): string {
  const { bm, bn, bk, tm, tn, buffers } = v.tile;
  const group = v.tile.group ?? 8;
  const nx = bn / tn;
  const threads = tileThreads(v.tile);
  const wa = Math.min(4, tm), wb = Math.min(4, tn);
  const ga = tm / wa, gb = tn / wb;
  const A = new OperandCode(
    {
      x: "a",
      tile: bm,
      kContiguous: !v.transA,
      vec: v.vecA,
      f16: false,
      packed: false,
      w: wa,
      groups: ga,
      outer: "p.m",
      ld: "p.lda",
      lane: "ty",
    },
    bk,
    threads,
    buffers,
  );
  const B = new OperandCode(
    {
      x: "b",
      tile: bn,
      kContiguous: v.transB,
      vec: v.vecB,
      f16: v.f16B,
      packed: v.f16Packed ?? false,
      quant: v.quantB,
      w: wb,
      groups: gb,
      outer: "p.n",
      ld: "p.ldb",
      lane: "tx",
    },
    bk,
    threads,
    buffers,
  );
  const bias = v.bias && !v.partial;
  const accumulate = v.accumulate && !v.partial;
  const act = v.partial ? undefined : v.activation;
  if (act && accumulate) throw new Error("matmul: an epilogue activation cannot accumulate into C");
  const vecC = v.vecC && wb === 4;
  const cElem = vecC ? "vec4<f32>" : "f32";

  // Register tile: c{i}_{h} holds row i, column group h (wb wide).
  const accDecl: string[] = [];
  for (let i = 0; i < tm; i++) {
    for (let h = 0; h < gb; h++) accDecl.push(`var c${i}_${h} = ${vecType(wb)}();`);
  }
  const aVal = (i: number) => comp(`a${Math.floor(i / wa)}`, wa, i % wa);
  const step = (bufA: string, bufB: string) => {
    const lines: string[] = [];
    for (let kk = 0; kk < bk; kk++) {
      lines.push("{", ...A.read(bufA, kk), ...B.read(bufB, kk));
      for (let i = 0; i < tm; i++) {
        for (let h = 0; h < gb; h++) {
          const a = wb === 1 ? aVal(i) : `${vecType(wb)}(${aVal(i)})`;
          lines.push(`c${i}_${h} = fma(${a}, b${h}, c${i}_${h});`);
        }
      }
      lines.push("}");
    }
    return lines.map((l) => `      ${l}`).join("\n");
  };

  // Epilogue: alpha, bias, accumulate or the activation, bounds-checked stores.
  const vec4Of = (f: (c: string) => string) => `vec4<f32>(${XYZW.map((c) => f(c)).join(", ")})`;
  const store = (ci: string, val: string, vec: boolean): string => {
    if (!act) return `c[${ci}] = ${val};`;
    if (act.backward) {
      const g = vec ? vec4Of((k) => `act_back_(v.${k}, x.${k})`) : "act_back_(v, x)";
      return `let v = ${val}; let x = pre[${ci}]; c[${ci}] = ${g};`;
    }
    const keep = act.keepPre ? `pre[${ci}] = v; ` : "";
    return `let v = ${val}; ${keep}c[${ci}] = ${vec ? vec4Of((k) => `act_(v.${k})`) : "act_(v)"};`;
  };
  const epilogue: string[] = [];
  for (let i = 0; i < tm; i++) {
    const rowOff = Math.floor(i / wa) * (bm / ga) + (i % wa);
    epilogue.push(`{ let row = m0 + ty * ${wa}u + ${rowOff}u;`, `  if (row < p.m) {`);
    for (let h = 0; h < gb; h++) {
      const col = `n0 + tx * ${wb}u + ${h * (bn / gb)}u`;
      if (vecC) {
        const lines = [
          `let col = ${col};`,
          `if (col < p.n) {`,
          `  let ci = (cBase + row * p.ldc + col) / 4u;`,
        ];
        let val = v.partial ? `c${i}_${h}` : `c${i}_${h} * p.alpha`;
        if (bias) val += ` + bias[col / 4u]`;
        if (accumulate) val += ` + c[ci]`;
        lines.push(`  ${store("ci", val, true)}`, `}`);
        epilogue.push(`    { ${lines.join(" ")} }`);
      } else {
        for (let j = 0; j < wb; j++) {
          let val = comp(`c${i}_${h}`, wb, j);
          if (!v.partial) val += " * p.alpha";
          if (bias) val += ` + bias[col]`;
          if (accumulate) val += ` + c[ci]`;
          epilogue.push(
            `    { let col = ${col} + ${j}u; if (col < p.n) { let ci = cBase + row * p.ldc + col; ${
              store("ci", val, false)
            } } }`,
          );
        }
      }
    }
    epilogue.push(`  }`, `}`);
  }

  const bufA = (e: string) => `${e} * ${A.bufferElems * (A.sharedVec ? 4 : 1)}u`;
  const bufB = (e: string) => `${e} * ${B.bufferElems * (B.sharedVec ? 4 : 1)}u`;
  const loop = buffers === 2
    ? `
  for (var t = 0u; t < nt; t = t + 1u) {
    let cur = t & 1u;
    let more = t + 1u < nt;
    let kn = kBegin + (t + 1u) * ${bk}u;
    if (more) {
${[...A.load("kn"), ...B.load("kn")].map((l) => `      ${l}`).join("\n")}
    }
    {
      let oa = ${bufA("cur")};
      let ob = ${bufB("cur")};
${step("oa", "ob")}
    }
    if (more) {
      let oa = ${bufA("(cur ^ 1u)")};
      let ob = ${bufB("(cur ^ 1u)")};
${[...A.store("oa"), ...B.store("ob")].map((l) => `      ${l}`).join("\n")}
    }
    workgroupBarrier();
  }`
    : `
  for (var t = 0u; t < nt; t = t + 1u) {
    let more = t + 1u < nt;
    let kn = kBegin + (t + 1u) * ${bk}u;
    if (more) {
${[...A.load("kn"), ...B.load("kn")].map((l) => `      ${l}`).join("\n")}
    }
    {
      let oa = 0u;
      let ob = 0u;
${step("oa", "ob")}
    }
    workgroupBarrier();
    if (more) {
${[...A.store("0u"), ...B.store("0u")].map((l) => `      ${l}`).join("\n")}
    }
    workgroupBarrier();
  }`;

  const extra = [
    ...(bias ? [`var<storage, read> bias: array<${cElem}>`] : []),
    ...(act?.backward || act?.keepPre
      ? [`var<storage, ${act.backward ? "read" : "read_write"}> pre: array<${cElem}>`]
      : []),
  ];
  // packed halves need no f16 type
  return `${v.f16B && !(v.f16Packed && v.vecB) ? "enable f16;\n" : ""}${MATMUL_PARAMS}${
    act ? `${MATH}\n${ACTIVATION_CODE[act.kind]}` : ""
  }
${A.declarations(0)}
${B.declarations(1)}
@group(0) @binding(2) var<storage, read_write> c: array<${cElem}>;
${extra.map((e, i) => `@group(0) @binding(${3 + i}) ${e};\n`).join("")}${
    B.scaleDeclaration(3 + extra.length)
  }@group(0) @binding(${3 + extra.length + (v.quantB ? 1 : 0)}) var<uniform> p: Params;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= p.tilesMN) { return; }
  // Walk ${group} tile rows per column of tiles so neighbouring workgroups share B panels in L2.
  let span = ${group}u * p.tilesN;
  let first = (tile / span) * ${group}u;
  let rows = min(p.tilesM - first, ${group}u);
  let within = tile % span;
  let m0 = (first + within % rows) * ${bm}u;
  let n0 = (within / rows) * ${bn}u;
  let batch = wid.z / p.splits;
  let kBegin = (wid.z % p.splits) * p.kChunk;
  let kEnd = min(p.k, kBegin + p.kChunk);
  let nt = (kEnd - kBegin + ${bk - 1}u) / ${bk}u;
  let outer = batch / p.heads;
  let head = batch % p.heads;
  let aBase = p.offA + outer * p.strideA + (head / p.groupA) * p.headA;
  let bBase = p.offB + outer * p.strideB + (head / p.groupB) * p.headB;
  let cBase = ${v.partial ? "wid.z * p.strideC" : "p.offC + outer * p.strideC + (head / p.groupC) * p.headC"};
  let tx = lid % ${nx}u;
  let ty = lid / ${nx}u;
${[...A.setup("m0", "aBase"), ...B.setup("n0", "bBase")].map((l) => `  ${l}`).join("\n")}
${[...A.registers(), ...B.registers()].map((l) => `  ${l}`).join("\n")}
${accDecl.map((l) => `  ${l}`).join("\n")}
${
    [...A.load("kBegin"), ...B.load("kBegin"), ...A.store("0u"), ...B.store("0u")].map((l) => `  ${l}`).join(
      "\n",
    )
  }
  workgroupBarrier();
${loop}
${epilogue.map((l) => `  ${l}`).join("\n")}
}
`;
}

/**
 * Split-K reduction: `C = alpha·Σ_s P[b·splits + s] (+ bias) (+ C)`, element-wise over
 * `batch·m·n` outputs in units of `vec4` (when `vec`) or f32. Bindings: 0 P, 1 C, [2 bias],
 * uniform {total, perBatch, n, splits, alpha} (counts in units). 256 invocations, linear grid.
 */
export function matmulReduceKernel(vec: boolean, bias: boolean, accumulate: boolean): Kernel {
  const name = `matmul.reduce${vec ? "4" : "1"}${bias ? "_bias" : ""}${accumulate ? "_acc" : ""}`;
  let kernel = kernels.get(name);
  if (kernel) return kernel;
  const e = vec ? "vec4<f32>" : "f32";
  const code = `struct Params { total: u32, perBatch: u32, n: u32, splits: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> part: array<${e}>;
@group(0) @binding(1) var<storage, read_write> c: array<${e}>;
${bias ? `@group(0) @binding(2) var<storage, read> bias: array<${e}>;\n` : ""}@group(0) @binding(${
    bias ? 3 : 2
  }) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.total) { return; }
  let b = i / p.perBatch;
  let e = i - b * p.perBatch;
  let first = b * p.splits * p.perBatch + e;
  var sum = part[first];
  for (var s = 1u; s < p.splits; s = s + 1u) { sum = sum + part[first + s * p.perBatch]; }
  c[i] = sum * p.alpha${bias ? " + bias[e % p.n]" : ""}${accumulate ? " + c[i]" : ""};
}
`;
  kernel = { name, code };
  kernels.set(name, kernel);
  return kernel;
}
