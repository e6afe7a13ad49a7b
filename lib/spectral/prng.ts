/**
 * A seeded, platform-independent pseudo-random generator for position sampling and
 * coefficient init. Every step is 32-bit integer arithmetic (`Math.imul`, shifts, xor), so
 * any language reproduces the integer stream bit for bit; only {@link Prng.normal} uses
 * float64 `log`, `sqrt`, `cos`, `sin` (identical wherever those are correctly rounded or share
 * V8's fdlibm port).
 *
 * The algorithm, exactly (all values uint32, `+` and `*` modulo 2^32):
 *
 * 1. Seeding (splitmix32). The seed is an integer 0 ≤ seed < 2^53; `lo = seed mod 2^32`,
 *    `hi = floor(seed / 2^32)`. With `x = lo`, each call of `splitmix32()` does
 *    `x += 0x9E3779B9; z = x; z = (z ^ (z >>> 16)) * 0x85EBCA6B; z = (z ^ (z >>> 13)) * 0xC2B2AE35;
 *    return z ^ (z >>> 16)`. The xoshiro state is `s0 = splitmix32() ^ hi, s1 = splitmix32(),
 *    s2 = splitmix32(), s3 = splitmix32()` (never all zero: s1..s3 are distinct outputs of a bijection).
 * 2. Output (xoshiro128**): `r = rotl(s1 * 5, 7) * 9; t = s1 << 9; s2 ^= s0; s3 ^= s1;
 *    s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11); return r`.
 * 3. Integers in [0, bound), 1 ≤ bound ≤ 2^32 (rejection, unbiased): bound = 2^32 returns
 *    the next output; otherwise with `limit = 2^32 − (2^32 mod bound)`, draw outputs r until
 *    `r < limit` and return `r mod bound`.
 * 4. Uniform float64 in [0, 1): two outputs a, b: `((a >>> 5) · 2^26 + (b >>> 6)) / 2^53`.
 * 5. Standard normal (Box–Muller, float64): `u1 = 1 − uniform()` (in (0, 1]),
 *    `u2 = uniform()`, `r = sqrt(−2 ln u1)`; return `r cos(2π u2)` and keep `r sin(2π u2)` for
 *    the next call.
 * @module
 */

const TWO_32 = 4294967296;

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** The generator: xoshiro128** seeded through splitmix32 (see the module doc for the exact steps). */
export class Prng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;
  #spare: number | null = null;

  /**
   * Seed the state through splitmix32 (step 1 of the module doc).
   * @param seed an integer, 0 ≤ seed < 2^53.
   */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new RangeError(`Prng seed must be an integer in [0, 2^53), got ${seed}`);
    }
    let x = seed >>> 0;
    const hi = Math.floor(seed / TWO_32) >>> 0;
    const splitmix32 = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) | 0;
    };
    this.#s0 = splitmix32() ^ hi;
    this.#s1 = splitmix32();
    this.#s2 = splitmix32();
    this.#s3 = splitmix32();
  }

  /** The next 32-bit output, as an integer in [0, 2^32). */
  u32(): number {
    const s1 = this.#s1;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return r >>> 0;
  }

  /** An unbiased integer in [0, bound), for an integer 1 ≤ bound ≤ 2^32. */
  below(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > TWO_32) {
      throw new RangeError(`Prng.below: bound must be an integer in [1, 2^32], got ${bound}`);
    }
    if (bound === TWO_32) return this.u32();
    const limit = TWO_32 - (TWO_32 % bound);
    for (;;) {
      const r = this.u32();
      if (r < limit) return r % bound;
    }
  }

  /** A uniform float64 in [0, 1) with 53 random bits. */
  uniform(): number {
    const a = this.u32() >>> 5, b = this.u32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** A standard normal draw (Box–Muller; pairs are produced together, the second cached). */
  normal(): number {
    if (this.#spare !== null) {
      const z = this.#spare;
      this.#spare = null;
      return z;
    }
    const u1 = 1 - this.uniform(), u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.#spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }

  /** `count` standard normal draws, in order, as float32 (the `init: normal` coefficients). */
  normals(count: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.normal();
    return out;
  }
}
