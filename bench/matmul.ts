/**
 * Matmul throughput: times {@link encodeMatmul} with GPU timestamps (wall clock around a sync
 * where the adapter has none) per shape, tile variant and B precision, and spot-checks the
 * result against float64 dot products.
 *
 *     deno run -A bench/matmul.ts                  # small shapes (software adapters)
 *     deno run -A bench/matmul.ts --large          # 4096³ and transformer shapes
 *     deno run -A bench/matmul.ts --large --tiles=auto,big,128x128x16_8x8_2 --reps=20
 *     deno run -A bench/matmul.ts --large --tiles=128x96x8_8x12_2/s1   # no K split
 *     deno run -A bench/matmul.ts --shapes=4096x768x768NT,768x768x4096TN --no-f16
 *     deno run -A bench/matmul.ts --shapes=128x128x64NTb384 --no-f16   # 384 heads in one call
 *     deno run -A bench/matmul.ts --large --quant    # B also as q8 and q4 codes
 *     deno run -A bench/matmul.ts --large --no-gemv  # few-row products on the m8 tile, not the GEMV
 *     deno run -A bench/matmul.ts --large --f16-loads=packed   # f16 B as u32 pairs, not vec4<f16>
 * @module
 */
import { getGpu, type Gpu, GpuTimer, readF32, upload } from "../lib/gpu/mod.ts";
import { type QuantKind, Tensor } from "../lib/tensor/mod.ts";
import { encodeMatmul, type MatmulTile } from "../lib/linalg/matmul.ts";
import {
  MATMUL_HEURISTICS,
  MATMUL_TILES,
  type MatmulOptions,
  type MatmulTileName,
  planMatmul,
  usesGemv,
} from "../lib/linalg/matmul_plan.ts";
import { parseTileName, tileName } from "../kernels/matmul.ts";
import { median, uniformValues, warmUp } from "./stats.ts";

/** One product to time: C (m, n) = op(A) op(B) with inner size k. */
export interface MatmulBenchShape {
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  /** Products of this shape in one call, stored back to back (attention's heads); default 1. */
  batch?: number;
  /** What the shape is (shown in the table). */
  label?: string;
}

/** A variant to time: the default choice (`auto`), a preset, or a custom tile; and a K split. */
export interface MatmulBenchVariant {
  tile: "auto" | MatmulTileName | MatmulTile;
  /** Forced K split (1 = none); default the planner's. */
  splitK?: number;
}

/** Options of {@link benchMatmul}. */
export interface MatmulBenchOptions {
  /** Variants timed for every shape (default `["auto"]`). */
  variants?: MatmulBenchVariant[];
  /** Timed repetitions per row (default 10; the median is reported). */
  reps?: number;
  /** Also time B stored as f16 when the device has f16 (default true). */
  f16?: boolean;
  /** Also time B stored as q8 and q4 codes (default false). */
  quant?: boolean;
}

/** How B is stored: f32, f16, or quantized codes. */
type Precision = "f32" | "f16B" | QuantKind;

/** B stored as `precision`: its buffer, the matmul options that read it, and the values it holds. */
async function storeB(
  gpu: Gpu,
  values: Float32Array,
  shape: MatmulBenchShape,
  precision: Precision,
): Promise<{ buffer: GPUBuffer; options: MatmulOptions; values: ArrayLike<number>; release(): void }> {
  if (precision === "f32" || precision === "f16B") {
    const stored = precision === "f16B" ? Float16Array.from(values) : values;
    const buffer = upload(gpu, stored);
    return {
      buffer,
      options: { f16B: precision === "f16B" },
      values: stored,
      release: () => gpu.pool.release(buffer),
    };
  }
  const rows = (shape.batch ?? 1) * (shape.transB ? shape.n : shape.k);
  const t = Tensor.from(gpu, values, [rows, values.length / rows], { dtype: precision });
  return {
    buffer: t.buffer,
    options: { quantB: { kind: precision, scales: t.scales } },
    values: await t.toArray(),
    release: () => t.dispose(),
  };
}

/** One timed row. */
export interface MatmulBenchRow {
  shape: string;
  label: string;
  /** `f32`, `f16B`, `q8` or `q4`. */
  b: string;
  /** Tile chosen or forced, with `/sK` for a K split. */
  variant: string;
  /** Median milliseconds per product. */
  ms: number;
  gflops: number;
  /** Largest relative error of 32 sampled entries against float64 dot products. */
  maxRelErr: number;
}

/** 4096³ and the products of a transformer layer (nn.Linear is `x Wᵀ`: transB). */
export const LARGE_SHAPES: MatmulBenchShape[] = [
  { m: 4096, n: 4096, k: 4096, label: "square" },
  { m: 4096, n: 768, k: 768, transB: true, label: "q/v proj, 32×128 tokens" },
  { m: 4096, n: 3072, k: 768, transB: true, label: "MLP up" },
  { m: 4096, n: 768, k: 3072, transB: true, label: "MLP down" },
  { m: 4096, n: 768, k: 768, label: "dX = dY·W" },
  { m: 768, n: 768, k: 4096, transA: true, label: "dW = dYᵀ·X" },
  { m: 2048, n: 4096, k: 4096, transB: true, label: "LLaMA q proj" },
  { m: 2048, n: 11008, k: 4096, transB: true, label: "LLaMA MLP up" },
  { m: 8, n: 4096, k: 4096, transB: true, label: "decode, 8 rows" },
];

/** Shapes a software adapter gets through in seconds. */
export const SMALL_SHAPES: MatmulBenchShape[] = [
  { m: 256, n: 256, k: 256, label: "square" },
  { m: 512, n: 192, k: 192, transB: true, label: "linear" },
  { m: 192, n: 192, k: 512, transA: true, label: "weight grad" },
  { m: 8, n: 512, k: 512, transB: true, label: "decode, 8 rows" },
  { m: 512, n: 512, k: 8, label: "rank-8 up-projection" },
];

/** Largest relative error of sampled entries of C against float64 dot products. */
function spotCheck(shape: MatmulBenchShape, a: Float32Array, b: ArrayLike<number>, c: Float32Array): number {
  const { m, n, k } = shape;
  let worst = 0;
  for (let s = 0; s < 32; s++) {
    const i = Math.floor((s * 7919) % m), j = Math.floor((s * 104729 + 13) % n);
    let dot = 0, mag = 0;
    for (let l = 0; l < k; l++) {
      const av = shape.transA ? a[l * m + i] : a[i * k + l];
      const bv = shape.transB ? b[j * k + l] : b[l * n + j];
      dot += av * bv;
      mag += Math.abs(av * bv);
    }
    worst = Math.max(worst, Math.abs(c[i * n + j] - dot) / Math.max(mag, 1e-30));
  }
  return worst;
}

/**
 * Time {@link encodeMatmul} on `shapes` (default {@link SMALL_SHAPES}) for each variant and B
 * precision. Variants that do not fit the device (workgroup memory, invocations) are skipped.
 */
export async function benchMatmul(
  gpu: Gpu,
  shapes: MatmulBenchShape[] = SMALL_SHAPES,
  opts: MatmulBenchOptions = {},
): Promise<MatmulBenchRow[]> {
  const variants = opts.variants ?? [{ tile: "auto" }];
  const reps = opts.reps ?? 10;
  const precisions: Precision[] = [
    "f32",
    ...(gpu.f16 && opts.f16 !== false ? ["f16B" as const] : []),
    ...(opts.quant ? ["q8" as const, "q4" as const] : []),
  ];
  const timer = new GpuTimer(gpu, reps + 1);
  const rows: MatmulBenchRow[] = [];
  for (const shape of shapes) {
    const { m, n, k } = shape;
    const batch = shape.batch ?? 1;
    // uniform in [-1, 1): standard deviation 1/√3
    const ah = uniformValues(batch * m * k, 1 / Math.sqrt(3), 1);
    const bh = uniformValues(batch * k * n, 1 / Math.sqrt(3), 2);
    const a = upload(gpu, ah);
    const c = gpu.pool.acquire(batch * m * n * 4);
    for (const precision of precisions) {
      const stored = await storeB(gpu, bh, shape, precision);
      const b = stored.buffer;
      for (const variant of variants) {
        const options = {
          transA: shape.transA,
          transB: shape.transB,
          ...stored.options,
          tile: variant.tile === "auto" ? undefined : variant.tile,
          splitK: variant.splitK,
          batch,
        };
        try {
          encodeMatmul(gpu, a, b, c, m, n, k, options); // warm-up: compiles the pipelines
        } catch (e) {
          console.warn(`skipped ${JSON.stringify(variant)}: ${(e as Error).message}`);
          continue;
        }
        await warmUp(gpu, () => encodeMatmul(gpu, a, b, c, m, n, k, options));
        await timer.mark();
        for (let r = 0; r < reps; r++) {
          encodeMatmul(gpu, a, b, c, m, n, k, options);
          await timer.mark();
        }
        const ms = median(await timer.read());
        const out = await readF32(gpu, c, m * n); // the first product of the batch
        const plan = planMatmul(gpu, m, n, k, options);
        const gemv = usesGemv(m, n, k, options);
        const name = gemv
          ? "gemv"
          : typeof variant.tile === "object"
          ? tileName(variant.tile)
          : plan.tileName;
        rows.push({
          shape: `${m}×${n}×${k} ${shape.transA ? "T" : "N"}${shape.transB ? "T" : "N"}${
            batch > 1 ? ` ×${batch}` : ""
          }`,
          label: shape.label ?? "",
          b: precision,
          variant: `${variant.tile === "auto" ? "auto:" : ""}${name}${
            !gemv && (plan.splits > 1 || variant.splitK) ? `/s${plan.splits}` : ""
          }`,
          ms,
          gflops: (2 * batch * m * n * k) / (ms * 1e6),
          maxRelErr: spotCheck(shape, ah, stored.values, out),
        });
      }
      stored.release();
    }
    gpu.pool.release(a);
    gpu.pool.release(c);
  }
  return rows;
}

/** The rows as an aligned text table. */
export function formatMatmulRows(rows: MatmulBenchRow[]): string {
  const header = ["shape", "what", "B", "variant", "ms", "GFLOP/s", "max rel err"];
  const cells = rows.map((r) => [
    r.shape,
    r.label,
    r.b,
    r.variant,
    r.ms.toFixed(3),
    r.gflops.toFixed(1),
    r.maxRelErr.toExponential(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  return [header, ...cells].map((row) => row.map((c, i) => c.padEnd(widths[i])).join("  ")).join("\n");
}

/**
 * `MxNxK` with an optional `NN`/`NT`/`TN`/`TT` suffix and a batch `bB`, e.g. `4096x768x768NT`
 * or `128x128x64NTb384`.
 */
function parseShape(text: string): MatmulBenchShape {
  const f = /^(\d+)x(\d+)x(\d+)([NT]{2})?(?:b(\d+))?$/.exec(text);
  if (!f) throw new Error(`--shapes: '${text}' is not MxNxK[NN|NT|TN|TT][bBATCH]`);
  return {
    m: Number(f[1]),
    n: Number(f[2]),
    k: Number(f[3]),
    transA: f[4]?.[0] === "T",
    transB: f[4]?.[1] === "T",
    batch: f[5] ? Number(f[5]) : undefined,
  };
}

/**
 * A preset name, `auto`, or a tile written as `tileName` prints it (`128x128x16_8x8_2`), with
 * an optional forced K split: `/s1` (none), `/s2`, ….
 */
function parseVariant(text: string): MatmulBenchVariant {
  const [name, split] = text.split("/");
  const splitK = split === undefined ? undefined : Number(/^s(\d+)$/.exec(split)?.[1] ?? NaN);
  if (splitK !== undefined && !(splitK >= 1)) {
    throw new Error(`--tiles: '${text}': the split is written /s1, /s2, …`);
  }
  if (name === "auto" || Object.hasOwn(MATMUL_TILES, name)) return { tile: name as MatmulTileName, splitK };
  const tile = parseTileName(name);
  if (!tile) {
    throw new Error(`--tiles: '${name}' is neither a preset (${Object.keys(MATMUL_TILES)}) nor a valid tile`);
  }
  return { tile, splitK };
}

if (import.meta.main) {
  const arg = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  const gpu = await getGpu();
  if (Deno.args.includes("--no-gemv")) MATMUL_HEURISTICS.gemvRows = 0;
  const f16Loads = arg("f16-loads");
  if (f16Loads !== undefined) {
    if (f16Loads !== "auto" && f16Loads !== "native" && f16Loads !== "packed") {
      throw new Error(`--f16-loads: expected auto, native or packed, got '${f16Loads}'`);
    }
    MATMUL_HEURISTICS.f16Loads = f16Loads;
  }
  console.log(`matmul on ${gpu.description} (${gpu.timestamps ? "GPU timestamps" : "wall clock"})`);
  const shapes = arg("shapes")?.split(",").map(parseShape) ??
    (Deno.args.includes("--large") ? LARGE_SHAPES : SMALL_SHAPES);
  const rows = await benchMatmul(gpu, shapes, {
    variants: arg("tiles")?.split(",").map(parseVariant),
    reps: arg("reps") ? Number(arg("reps")) : undefined,
    f16: !Deno.args.includes("--no-f16"),
    quant: Deno.args.includes("--quant"),
  });
  console.log(formatMatmulRows(rows));
}
