/**
 * Spectral parity: for a safetensors file in the `dht_reference` layout (for each size MxN,
 * `x_MxN` and any of `dht_MxN`, `dht2d_MxN`, `dft_MxN`, `dht_rows_MxN`; any float dtype),
 * compute every transform present on the GPU (f32) and compare with the stored reference.
 * @module
 */
import { getGpu, readF32, upload } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { encodeFht } from "../lib/spectral/fht.ts";
import { compareToReference } from "../lib/spectral/reference.ts";
import { encodeTransform2d, type Transform, TRANSFORMS } from "../lib/spectral/transforms.ts";

/** One comparison of {@link spectralParityRows}. */
export interface ParityRow {
  /** `MxN`. */
  size: string;
  /** `dht`, `dht2d`, `dft` or `dht_rows` (the 1-D FHT of every row). */
  transform: Transform | "dht_rows";
  relL2: number;
  maxAbs: number;
}

/** Compare every transform in `path` (see the module doc); one row per stored reference. */
export async function spectralParityRows(path: string): Promise<ParityRow[]> {
  const file = await openSafetensors(path);
  const sizes = file.names.filter((k) => k.startsWith("x_")).map((k) => k.slice(2));
  if (sizes.length === 0) throw new Error(`${path}: no tensors named x_MxN (not a spectral reference file)`);
  const gpu = await getGpu();
  const rows: ParityRow[] = [];
  for (const size of sizes.sort(bySize)) {
    const shape = file.info(`x_${size}`).shape;
    if (shape.length !== 2) throw new Error(`${path}: x_${size} has shape [${shape}], expected [M, N]`);
    const [m, n] = shape;
    const x = await file.readF32(`x_${size}`);
    const src = upload(gpu, x);
    const dst = gpu.pool.acquire(m * n * 4);
    for (const transform of [...TRANSFORMS, "dht_rows"] as const) {
      const key = `${transform}_${size}`;
      if (!file.has(key)) continue;
      const expected = file.info(key).dtype === "F64"
        ? await file.read(key) as Float64Array
        : await file.readF32(key);
      if (expected.length !== m * n) {
        throw new Error(`${path}: ${key} has ${expected.length} values, expected ${m * n}`);
      }
      if (transform === "dht_rows") encodeFht(gpu, src, dst, m, n);
      else encodeTransform2d(gpu, transform, src, dst, m, n);
      const actual = await readF32(gpu, dst, m * n);
      rows.push({ size, transform, ...compareToReference(actual, expected) });
    }
    gpu.pool.release(src);
    gpu.pool.release(dst);
  }
  return rows;
}

/** Sizes by element count, then by name. */
function bySize(a: string, b: string): number {
  const count = (s: string) => s.split("x").map(Number).reduce((p, v) => p * v, 1);
  return count(a) - count(b) || a.localeCompare(b);
}

/** The rows as an aligned text table, failures marked. */
export function formatParity(rows: readonly ParityRow[], tol: number): string {
  const head = ["size", "transform", "rel-L2", "max-abs", ""];
  const body = rows.map((r) => [
    r.size,
    r.transform,
    r.relL2.toExponential(2),
    r.maxAbs.toExponential(2),
    r.relL2 <= tol ? "ok" : `FAIL (> ${tol.toExponential()})`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cols) => cols.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join(
    "\n",
  );
}

/**
 * Run the spectral parity check on `path`, print the table, and return whether every
 * rel-L2 is ≤ `tol`.
 */
export async function spectralParity(path: string, tol: number): Promise<boolean> {
  const rows = await spectralParityRows(path);
  console.log(formatParity(rows, tol));
  const bad = rows.filter((r) => !(r.relL2 <= tol)).length;
  const t = tol.toExponential();
  console.log(
    bad === 0 ? `all ${rows.length} comparisons within ${t}` : `${bad} of ${rows.length} above ${t}`,
  );
  return bad === 0;
}
