/**
 * The CPU twin of the dropout mask.
 * @module
 */
import { pcgHash } from "../../../kernels/elementwise.ts";
import { type DropoutKey, dropoutMaskKey, dropoutThreshold, wholeIndex } from "../ops/dropout.ts";

/**
 * 1 where element i is kept, 0 where dropped, for `n` elements. With `key.rows`, the elements
 * are rows of `unit` elements (default: one row per sequence), `group` per sequence.
 */
export function dropoutMask(n: number, p: number, key: DropoutKey, unit?: number, group = 1): Uint8Array {
  const k = dropoutMaskKey(key), threshold = dropoutThreshold(p);
  const index = key.rows ? wholeIndex(key.rows, unit ?? n / key.rows.batch, group) : (i: number) => i;
  return Uint8Array.from(
    { length: n },
    (_, i) => (pcgHash((pcgHash(index(i)) + k) >>> 0) >= threshold ? 1 : 0),
  );
}
