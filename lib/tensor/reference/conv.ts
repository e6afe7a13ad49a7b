/**
 * Float64 conv2d with stride equal to the kernel (the ViT patch embedding).
 * @module
 */

/** x [B, C, H, W], w [E, C, P, P], bias [E] → [B, (H/P)(W/P), E], patches row-major. */
export function patchEmbedForward(
  x: Float64Array,
  [b, c, h, wd]: readonly number[],
  w: Float64Array,
  e: number,
  p: number,
  bias: Float64Array | null,
): Float64Array {
  const ph = h / p, pw = wd / p;
  const y = new Float64Array(b * ph * pw * e);
  for (let bi = 0; bi < b; bi++) {
    for (let py = 0; py < ph; py++) {
      for (let px = 0; px < pw; px++) {
        for (let o = 0; o < e; o++) {
          let acc = bias ? bias[o] : 0;
          for (let ci = 0; ci < c; ci++) {
            for (let u = 0; u < p; u++) {
              for (let v = 0; v < p; v++) {
                acc += x[((bi * c + ci) * h + py * p + u) * wd + px * p + v] *
                  w[((o * c + ci) * p + u) * p + v];
              }
            }
          }
          y[((bi * ph + py) * pw + px) * e + o] = acc;
        }
      }
    }
  }
  return y;
}
