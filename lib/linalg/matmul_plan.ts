/**
 * Planning of the matrix products that lib/linalg/matmul.ts encodes: the preset tiles, the
 * heuristics that pick a tile and a K split for a shape on a device, and when a product runs as
 * a GEMV instead.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import {
  type EpilogueActivation,
  type MatmulTile,
  tileName,
  tileProblem,
  tileSharedBytes,
} from "../../kernels/matmul.ts";
import { GEMV_MAX_ROWS, gemvSharedBytes, gemvStep } from "../../kernels/gemv.ts";
import type { QuantKind } from "../tensor/quant_format.ts";

/**
 * The preset tiles. On a GPU, `big` (128×128, 8×16 per invocation), `tall` (128×96, 8×12) and
 * `wide` (64×128, 4×16) compete by an estimate of their time (`chooseTile`); `medium` takes
 * products that none of them fills and those with a side ≤ 64. Software adapters get `cpu`
 * (64×64 with 16×16 per invocation: 1.5–1.8× faster there than 8×8 register tiles, which were up
 * to 1.9× faster than 4×4). Both: `small` (32×32, 64 invocations) when both sides are ≤ 32
 * (attention over short sequences, where `m32` computed 128 columns for ≤ 32); `m8`/`m32` for
 * few rows (decoding, LoRA rank on the left), `n8`/`n32` for few columns (x·Aᵀ with a rank-r A).
 * Other tiles, for tuning, are passed as a {@link MatmulTile} (`parseTileName` in kernels/matmul.ts
 * reads names like `128x128x8_8x8_2`, as `bench/matmul.ts --tiles` does); the ones tried on an
 * H100 are in bench/RESULTS.md.
 */
export const MATMUL_TILES = {
  // 35.4 TFLOP/s at 4096³ on an H100, against 31.3 for `wide` (bench/RESULTS.md, 2026-11-27)
  big: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 16, buffers: 2 },
  // 256 workgroups at a 4096×768 output (one wave of an H100) and 768 at 4096×2304 (three): the
  // fastest tile tried at every product of a RoBERTa-base step but the 3072-wide ones
  // (bench/RESULTS.md, session 11)
  tall: { bm: 128, bn: 96, bk: 8, tm: 8, tn: 12, buffers: 2 },
  // 64×128 with 4×16 per invocation: many workgroups of a small register tile
  wide: { bm: 64, bn: 128, bk: 8, tm: 4, tn: 16, buffers: 2 },
  // software adapters (lavapipe): 16 invocations with 16×16 each, single-buffered
  cpu: { bm: 64, bn: 64, bk: 8, tm: 16, tn: 16, buffers: 1 },
  medium: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, buffers: 2 },
  small: { bm: 32, bn: 32, bk: 8, tm: 4, tn: 4, buffers: 2 },
  m8: { bm: 8, bn: 128, bk: 16, tm: 1, tn: 4, buffers: 2 },
  m32: { bm: 32, bn: 128, bk: 16, tm: 2, tn: 8, buffers: 2 },
  n8: { bm: 128, bn: 8, bk: 16, tm: 4, tn: 1, buffers: 2 },
  n32: { bm: 128, bn: 32, bk: 16, tm: 8, tn: 2, buffers: 2 },
} as const satisfies Record<string, MatmulTile>;

/** Name of a preset tile. */
export type MatmulTileName = keyof typeof MATMUL_TILES;

/** Options of `encodeMatmul` (lib/linalg/matmul.ts), which plans by them. */
export interface MatmulOptions {
  /** A stored as (k, m) instead of (m, k). */
  transA?: boolean;
  /** B stored as (n, k) instead of (k, n) — the nn.Linear case `y = x Wᵀ`. */
  transB?: boolean;
  /** A, B, C each hold `batch` matrices back to back (B only one when `broadcastB`). */
  batch?: number;
  /** Use the same B for every batch entry. */
  broadcastB?: boolean;
  /** f32 [n], added to every row of C. */
  bias?: GPUBuffer;
  /**
   * Element of `bias` that C's first column adds (default 0): a multiple of the device's
   * `minStorageBufferOffsetAlignment` / 4, as the bias is bound from there.
   */
  biasOffset?: number;
  /** C += result instead of C = result. */
  accumulate?: boolean;
  /** Scale of the product: C = alpha·A·B (+ bias) (+ C). Default 1. */
  alpha?: number;
  /** B stored as f16 (frozen weights), computed in f32; needs `gpu.f16`. */
  f16B?: boolean;
  /**
   * B stored quantized (frozen weights; lib/tensor/quant_format.ts): `b` holds the codes and
   * `scales` the group scales, and B's stored rows and placement must allow vec4 reads.
   */
  quantB?: { kind: QuantKind; scales: GPUBuffer };
  /** Tile override (a preset name or a custom tile), for tuning and tests. */
  tile?: MatmulTileName | MatmulTile;
  /** Number of K chunks computed by separate workgroups and summed by a second pass (1 = none). */
  splitK?: number;
  /**
   * The batch is `batch / heads` outer entries of `heads` heads each (default 1), for
   * {@link MatrixLayout}'s `headStride` and `headGroup`.
   */
  heads?: number;
  /** Where A's matrices lie in its buffer (default: packed back to back). */
  layoutA?: MatrixLayout;
  /** Where B's matrices lie (default: packed, or one shared with `broadcastB`). */
  layoutB?: MatrixLayout;
  /** Where C's matrices lie (default: packed). A strided C is never split along K. */
  layoutC?: MatrixLayout;
  /**
   * An activation in the epilogue, with `pre` (f32, C's size) for the pre-activation:
   * forward, C = act(result) and `pre`, when given, receives the result; `backward`, C =
   * result·act′(pre) (the gradient through the activation, brought back by this product).
   * Never split along K; not with `accumulate` or `layoutC`.
   */
  activation?: { kind: EpilogueActivation; pre?: GPUBuffer; backward?: boolean };
}

/**
 * Placement of one operand's matrices in its buffer, in elements: matrix z = (outer, head) =
 * (z / heads, z % heads) starts at `offset + outer·batchStride + ⌊head / headGroup⌋·headStride`
 * and its stored rows (as stored: (k, m) for a transposed A) are `ld` apart. Attention uses it
 * to read and write heads in place in [B, T, H, D] tensors, and to share a K/V head among
 * `headGroup` query heads.
 */
export interface MatrixLayout {
  /** Elements between stored rows; default the stored row length. */
  ld?: number;
  /** Element offset of the first matrix; default 0. */
  offset?: number;
  /** Elements between outer batch entries; default `heads` packed matrices (0 for a broadcast B). */
  batchStride?: number;
  /** Elements between heads of one outer entry; default one packed matrix (0 for a broadcast B). */
  headStride?: number;
  /** Consecutive heads that share one matrix; default 1. */
  headGroup?: number;
}

/** What `encodeMatmul` will dispatch for a shape. */
export interface MatmulPlan {
  /** Preset name, or `custom`. */
  tileName: MatmulTileName | "custom";
  tile: MatmulTile;
  /** K chunks (1 = no split-K pass). */
  splits: number;
  /** K elements per chunk (a multiple of the tile's bk). */
  kChunk: number;
}

/** Workgroups that keep a large GPU busy (two per SM on a 132-SM H100). */
const GPU_TARGET_GROUPS = 264;

/**
 * Speed of a workgroup of each competing GPU preset at full waves, relative to `big`'s, per
 * element of its block: `wide` 31.3 against 35.4 TFLOP/s at 4096³ on an H100; `tall` from the
 * fused q/k/v product (4096×2304×768, three waves: 0.475 ms against `big`'s 0.584 in 2.2 waves).
 */
const GPU_PRESET_SPEED = { big: 1, tall: 0.89, wide: 0.885 } as const;

/**
 * Constants of the tile choice and K split, exported so benchmarks can tune them
 * (`bench/step.ts --fill`); the defaults are what bench/RESULTS.md supports.
 */
export const MATMUL_HEURISTICS = {
  /**
   * The fraction of the device's target workgroups that counts as filling it: a product that
   * fills it with no GPU preset gets `medium`, and one with fewer workgroups of its tile splits
   * K. 0.9: `tall` at a 4096×768 output (256 workgroups) ran 6–10% faster whole than split in two.
   */
  fill: 0.9,
  /**
   * How a product loads an f16 B read 4 at a time: `native` as `vec4<f16>`, `packed` as two u32
   * unpacked with `unpack2x16float`, `auto` packed when B's rows run along n (not transposed)
   * and native when they run along k. At 4096³ on an H100 (bench/RESULTS.md, session 11): NN
   * 32.8 TFLOP/s native, 36.2 packed (f32: 35.1); NT 35.9 native, 34.7 packed (f32: 34.8).
   * `bench/matmul.ts --f16-loads` compares them.
   */
  f16Loads: "auto" as "auto" | "native" | "packed",
  /** The GPU presets that compete for a product (`bench/step.ts --presets` runs with fewer). */
  gpuPresets: ["big", "tall", "wide"] as ("big" | "tall" | "wide")[],
  /**
   * Products of at most this many rows against a packed B (decoding's x·Wᵀ, or x·W for GPT-2's
   * Conv1D weights) run as a GEMV (kernels/gemv.ts) rather than a tile; 0 never.
   */
  gemvRows: GEMV_MAX_ROWS,
};

/**
 * Whether `encodeMatmul` runs a product as a GEMV: few rows, B packed, one matrix, no
 * tuning override, no backward activation, B's rows fit the kernel's loads (k a multiple of
 * its step when B is transposed, n a multiple of 4 when not), and its workgroup memory fits
 * `workgroupBytes` (the device's; a (k, n) B takes 4 KiB a row).
 */
export function usesGemv(
  m: number,
  n: number,
  k: number,
  opts: MatmulOptions = {},
  workgroupBytes = Infinity,
): boolean {
  const typeB = opts.quantB?.kind ?? (opts.f16B ? "f16" : "f32");
  const rowsFit = opts.transB ? k % gemvStep(typeB) === 0 : n % 4 === 0;
  return m <= Math.min(MATMUL_HEURISTICS.gemvRows, GEMV_MAX_ROWS) && n >= 1 && rowsFit &&
    gemvSharedBytes(m, opts.transB ?? false) <= workgroupBytes &&
    !opts.transA && (opts.batch ?? 1) === 1 && (opts.heads ?? 1) === 1 && opts.tile === undefined &&
    opts.splitK === undefined && !opts.layoutA && !opts.layoutB && !opts.layoutC &&
    !opts.activation?.backward;
}
/** A software adapter (lavapipe) runs a few workgroups at a time: favour big register tiles. */
const CPU_TARGET_GROUPS = 4;
/** The least K per split-K chunk worth a workgroup. */
const MIN_CHUNK = 256;
const MAX_SPLITS = 32;
/** Largest split-K scratch buffer allocated. */
const MAX_SCRATCH_BYTES = 256 << 20;

function tiles(m: number, n: number, t: MatmulTile): number {
  return Math.ceil(m / t.bm) * Math.ceil(n / t.bn);
}

/**
 * How many workgroups a product should be cut into to fill `gpu`: the matmul heuristics'
 * notion of the device's width (software adapters get a small one).
 */
function targetGroups(gpu: Gpu): number {
  return gpu.software ? CPU_TARGET_GROUPS : GPU_TARGET_GROUPS;
}

/** The preset a shape gets by default on a device that wants `target` workgroups. */
export function chooseTile(m: number, n: number, batch = 1, target = GPU_TARGET_GROUPS): MatmulTileName {
  if (m <= 32 && n <= 32) return "small";
  if (m <= 8 && n >= m) return "m8";
  if (n <= 8) return "n8";
  if (m <= 32) return "m32";
  if (n <= 32) return "n32";
  // a software adapter runs few invocations at once: the bigger the register tile, the better
  if (target <= CPU_TARGET_GROUPS) return "cpu";
  if (m <= 64 || n <= 64) return "medium";
  // Workgroups run in rounds of `target`, and the last round runs part full: the estimate is
  // rounds × block elements / speed. So 4096×2304 takes `tall` (3 full rounds) over `big`
  // (2.2 rounds, the third one 18% full), and 4096³ `big` (3.9 rounds of the least work).
  let best: MatmulTileName = "medium", bestCost = Infinity;
  for (const name of MATMUL_HEURISTICS.gpuPresets) {
    const t = MATMUL_TILES[name];
    const waves = tiles(m, n, t) * batch / target;
    if (waves < MATMUL_HEURISTICS.fill) continue;
    const cost = Math.ceil(waves) * t.bm * t.bn / GPU_PRESET_SPEED[name];
    if (cost < bestCost) [best, bestCost] = [name, cost];
  }
  return best;
}

/**
 * `tile` with its K step halved, then single-buffered, until its workgroup memory fits `bytes`:
 * the presets assume more than WebGPU's default 16 KiB (`medium` needs 16.5–17 KiB, `m32` 20–21),
 * which some integrated GPUs offer alone. Fewer K rows a step keep the register tile and its
 * loads; only the barriers a step come more often.
 * @throws Error when not even a single-buffered tile of K step 4 fits.
 */
function fitTile(
  tile: MatmulTile,
  opts: Pick<MatmulOptions, "transA" | "transB">,
  bytes: number,
): MatmulTile {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  let t = tile;
  while (tileSharedBytes(t, transA, transB) > bytes) {
    if (t.bk % 8 === 0) t = { ...t, bk: t.bk / 2 };
    else if (t.buffers === 2) t = { ...t, buffers: 1 };
    else {
      throw new Error(
        `encodeMatmul: tile ${
          tileName(tile)
        } fits no K step in this device's ${bytes} bytes of workgroup memory`,
      );
    }
  }
  return t;
}

/** The tile and K split `encodeMatmul` uses for a shape and options. */
export function planMatmul(gpu: Gpu, m: number, n: number, k: number, opts: MatmulOptions = {}): MatmulPlan {
  const batch = opts.batch ?? 1;
  const target = targetGroups(gpu);
  let name: MatmulTileName | "custom";
  let tile: MatmulTile;
  if (opts.tile === undefined) {
    name = chooseTile(m, n, batch, target);
    tile = fitTile(MATMUL_TILES[name], opts, gpu.limits.maxComputeWorkgroupStorageSize);
  } else if (typeof opts.tile === "string") {
    if (!Object.hasOwn(MATMUL_TILES, opts.tile)) {
      throw new Error(
        `encodeMatmul: unknown tile '${opts.tile}' (presets: ${Object.keys(MATMUL_TILES).join(", ")})`,
      );
    }
    name = opts.tile;
    tile = MATMUL_TILES[name];
  } else {
    const problem = tileProblem(opts.tile);
    if (problem) throw new Error(`encodeMatmul: bad tile ${JSON.stringify(opts.tile)}: ${problem}`);
    name = "custom";
    tile = opts.tile;
  }
  let splits: number;
  if (opts.splitK !== undefined) {
    if (!Number.isInteger(opts.splitK) || opts.splitK < 1) {
      throw new Error(`encodeMatmul: splitK must be a positive integer, got ${opts.splitK}`);
    }
    splits = opts.splitK;
  } else {
    const groups = tiles(m, n, tile) * batch;
    splits = 1;
    if (groups < MATMUL_HEURISTICS.fill * target && k >= 2 * MIN_CHUNK) {
      const scratchCap = Math.floor(MAX_SCRATCH_BYTES / (batch * m * n * 4));
      splits = Math.max(
        1,
        Math.min(Math.ceil(target / groups), Math.floor(k / MIN_CHUNK), MAX_SPLITS, scratchCap),
      );
    }
  }
  const kChunk = Math.ceil(Math.ceil(k / splits) / tile.bk) * tile.bk;
  return { tileName: name, tile, splits: Math.ceil(k / kChunk), kChunk };
}
