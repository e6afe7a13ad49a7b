/**
 * How a loaded model's parameters are stored on the GPU: a line for `train` and `inspect`
 * that counts the linear weights by storage dtype and says what the parameters take.
 * @module
 */
import type { Model } from "./model.ts";

/** `1.50 GiB`, `12.3 MiB`, `512 bytes`. */
export function formatBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} bytes` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** E.g. `linear weights 24 q4, 2 f16; parameters 1.21 GiB (4.05 GiB as f32)`. */
export function storageSummary(model: Model): string {
  const counts = new Map<string, number>();
  for (const lin of model.linears.values()) {
    counts.set(lin.weight.dtype, (counts.get(lin.weight.dtype) ?? 0) + 1);
  }
  const dtypes = [...counts.entries()].sort(([a], [b]) => ORDER.indexOf(a) - ORDER.indexOf(b));
  let stored = 0, f32 = 0;
  for (const t of model.parameters.values()) {
    stored += t.bytes;
    f32 += t.size * 4;
  }
  return `linear weights ${dtypes.map(([d, n]) => `${n} ${d}`).join(", ")}; parameters ${
    formatBytes(stored)
  }` +
    (stored === f32 ? "" : ` (${formatBytes(f32)} as f32)`);
}

const ORDER = ["q4", "q8", "f16", "f32"];
