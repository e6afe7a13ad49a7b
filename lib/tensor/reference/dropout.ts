/**
 * The CPU twin of the dropout mask.
 * @module
 */
import { pcgHash } from "../../../kernels/elementwise.ts";
import { type DropoutKey, dropoutMaskKey, dropoutThreshold } from "../ops/dropout.ts";

/** 1 where element i is kept, 0 where dropped, for `n` elements (`key.rows`: the rows' own masks). */
export function dropoutMask(n: number, p: number, key: DropoutKey): Uint8Array {
  const k = dropoutMaskKey(key), threshold = dropoutThreshold(p);
  const { run, stride } = key.rows ?? { run: 1, stride: 1 };
  const whole = (i: number) => Math.floor(i / run) * stride + (i % run);
  return Uint8Array.from(
    { length: n },
    (_, i) => (pcgHash((pcgHash(whole(i)) + k) >>> 0) >= threshold ? 1 : 0),
  );
}
