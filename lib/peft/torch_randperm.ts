/**
 * The first entries of `torch.randperm(n, generator=torch.Generator().manual_seed(seed))`, as
 * PyTorch's CPU kernel (`randperm_cpu`) draws them, so that FourierFT positions agree with PEFT's,
 * which redraws them from `random_loc_seed` and never saves them. PyTorch's generator is the
 * 32-bit Mersenne Twister (MT19937) seeded with the seed's low 32 bits. The kernel has two branches:
 * - n < {@link TORCH_RANDPERM_LIMIT}: a Fisher–Yates shuffle taking `random() % (n − i)` for
 *   position i, so the first k entries are fixed after k draws ({@link fisherYatesPrefix}, O(k));
 * - from there on (PyTorch 2.7 and later; earlier versions shuffle every n as above): the
 *   "inside-out" shuffle, `z = random64() % (i + 1); r[i] = r[z]; r[z] = i` for every i < n, where
 *   `random64()` is two outputs, the first the high word ({@link insideOutPrefix}, O(n) time).
 * Checked against the positions PEFT drew for the fixtures (tests/fourierft_test.ts), against
 * PyTorch's own draws below the threshold and against its C++ loop above it (tests/peft_peers_test.ts).
 * @module
 */

/** The n from which PyTorch's randperm takes the 64-bit branch (its test `n < UINT32_MAX / 20`). */
export const TORCH_RANDPERM_LIMIT: number = Math.floor(0xffffffff / 20);

/** The largest n drawn: up to it, `random64() % (i + 1)` is computed exactly in doubles ({@link mod64}). */
export const TORCH_RANDPERM_MAX: number = 2 ** 36;

/** A source of 32-bit outputs (as numbers in [0, 2³²)). */
export interface Rng32 {
  /** The next output. */
  next(): number;
}

// MT19937's constants as int32 (the generator runs in int32 arithmetic)
const UPPER = 0x80000000 | 0, MATRIX_A = 0x9908b0df | 0, TEMPER_B = 0x9d2c5680 | 0, TEMPER_C = 0xefc60000 | 0;

/** PyTorch's CPU generator after `manual_seed(seed)`: MT19937's 32-bit outputs. */
export class Mt19937 implements Rng32 {
  readonly #state = new Int32Array(624);
  /** The outputs of the last twist, tempered (int32 bit patterns). */
  readonly #out = new Int32Array(624);
  #next = 624;

  /** The generator of `torch.Generator().manual_seed(seed)` (the seed's low 32 bits). */
  constructor(seed: number) {
    const s = this.#state;
    s[0] = Number(BigInt.asUintN(32, BigInt(seed)));
    for (let i = 1; i < 624; i++) s[i] = Math.imul(1812433253, s[i - 1] ^ (s[i - 1] >>> 30)) + i;
  }

  /** The next 32-bit output. */
  next(): number {
    if (this.#next === 624) this.#twist();
    return this.#out[this.#next++] >>> 0;
  }

  /** The next 624 states and their tempered outputs, at once (int32 constants and no branches: speed). */
  #twist(): void {
    const s = this.#state, out = this.#out;
    for (let i = 0; i < 227; i++) twistStep(s, i, i + 1, i + 397);
    for (let i = 227; i < 623; i++) twistStep(s, i, i + 1, i - 227);
    twistStep(s, 623, 0, 396);
    for (let i = 0; i < 624; i++) {
      let x = s[i];
      x ^= x >>> 11;
      x ^= (x << 7) & TEMPER_B;
      x ^= (x << 15) & TEMPER_C;
      out[i] = x ^ (x >>> 18);
    }
    this.#next = 0;
  }
}

/** MT19937's recurrence for state i from states i + 1 (`next`) and i + 397 (`far`), modulo 624. */
function twistStep(s: Int32Array, i: number, next: number, far: number): void {
  const y = (s[i] & UPPER) | (s[next] & 0x7fffffff);
  s[i] = s[far] ^ (y >>> 1) ^ (-(y & 1) & MATRIX_A);
}

/**
 * `torch.randperm(n, generator=manual_seed(seed))[:take]` (flat indices, exact as doubles).
 * Below {@link TORCH_RANDPERM_LIMIT} this costs O(take); from it on, O(n) time (two generator
 * outputs and a division per entry: about 5 s of CPU for a 28672 × 8192 layer, 12 s for a
 * 128256 × 4096 LM head) and O(take) memory. Those draws are remembered (a few sizes), so layers
 * of one size, which PEFT draws from one seed, cost the time once.
 * @throws RangeError when n is over {@link TORCH_RANDPERM_MAX} or take is not in [0, n].
 */
export function torchRandpermPrefix(n: number, seed: number, take: number): Float64Array {
  if (!(Number.isInteger(n) && n >= 0 && n <= TORCH_RANDPERM_MAX)) {
    throw new RangeError(`torch randperm: n = ${n} must be an integer in [0, 2^36]`);
  }
  if (!(Number.isInteger(take) && take >= 0 && take <= n)) {
    throw new RangeError(`torch randperm: take = ${take} must be an integer in [0, ${n}]`);
  }
  if (n < TORCH_RANDPERM_LIMIT) return fisherYatesPrefix(n, new Mt19937(seed), take);
  const key = `${n}/${seed}/${take}`;
  let drawn = LARGE_DRAWS.get(key);
  if (!drawn) {
    drawn = insideOutPrefix(n, new Mt19937(seed), take);
    if (LARGE_DRAWS.size >= 8) LARGE_DRAWS.delete(LARGE_DRAWS.keys().next().value!);
    LARGE_DRAWS.set(key, drawn);
  }
  return drawn.slice();
}

/** The last large draws of {@link torchRandpermPrefix}, by n, seed and take. */
const LARGE_DRAWS = new Map<string, Float64Array>();

/**
 * The first `take` entries of PyTorch's small-n shuffle of 0..n−1 drawing from `rng`: only the
 * entries a swap has touched are stored (the others hold their index), O(take).
 */
function fisherYatesPrefix(n: number, rng: Rng32, take: number): Float64Array {
  const moved = new Map<number, number>();
  const at = (i: number) => moved.get(i) ?? i;
  const out = new Float64Array(take);
  for (let i = 0; i < take; i++) {
    // torch draws for i < n − 1 only: the last entry is what is left
    const j = i < n - 1 ? i + (rng.next() % (n - i)) : i;
    out[i] = at(j);
    moved.set(j, at(i));
    moved.delete(i);
  }
  return out;
}

/**
 * The first `take` entries of PyTorch's inside-out shuffle of 0..n−1 drawing from `rng`. Step i
 * moves r[z] to r[i] and puts i at z; past `take` only a z inside the prefix matters, so the
 * prefix is all that is kept (O(take) memory, O(n) time). n must be at most {@link TORCH_RANDPERM_MAX}.
 */
export function insideOutPrefix(n: number, rng: Rng32, take: number): Float64Array {
  const out = new Float64Array(take);
  for (let i = 0; i < n; i++) {
    const hi = rng.next(), lo = rng.next(), m = i + 1;
    if (i < take) {
      const z = mod64(hi, lo, m);
      out[i] = out[z];
      out[z] = i;
    } else if (mayLandBelow(hi, lo, m, take)) {
      const z = mod64(hi, lo, m);
      if (z < take) out[z] = i;
    }
  }
  return out;
}

/**
 * False only when (hi·2³² + lo) mod m is surely ≥ `take`, decided in plain doubles: the quotient
 * (hi·2³² + lo)/m is off by at most 3·2¹⁰/m (the sum rounded, then the division), so the remainder
 * comes out within 3·2¹⁰ + 1 of the true one, or near 0 ≡ m when the true one is near m or 0. One
 * 2¹³ clear of both ends is sure; the others are computed exactly ({@link mod64}).
 */
function mayLandBelow(hi: number, lo: number, m: number, take: number): boolean {
  const q = (hi * 4294967296 + lo) / m;
  const z = (q - Math.floor(q)) * m;
  return z < take + 8192 || z >= m - 8192;
}

/**
 * (hi·2³² + lo) mod m, exactly, for 32-bit hi and lo and an integer 1 ≤ m ≤ 2³⁶: reduced in two
 * steps, (hi·2¹⁶ mod m)·2¹⁶ + lo, with every intermediate below 2⁵³. Each step takes the quotient
 * from one reciprocal (off by at most one, which the step corrects).
 */
export function mod64(hi: number, lo: number, m: number): number {
  const inv = 1 / m;
  const reduce = (t: number) => {
    const r = t - Math.floor(t * inv) * m;
    return r < 0 ? r + m : r >= m ? r - m : r;
  };
  return reduce(reduce(hi * 65536) * 65536 + lo);
}
