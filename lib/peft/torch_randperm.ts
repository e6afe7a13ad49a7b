/**
 * The first entries of `torch.randperm(n, generator=torch.Generator().manual_seed(seed))`, as
 * PyTorch's CPU kernel draws them, so that FourierFT positions agree with PEFT's, which redraws
 * them from `random_loc_seed` and never saves them. PyTorch's generator is the 32-bit Mersenne
 * Twister (MT19937) seeded with the seed's low 32 bits; below `n` = 2³²/20 its randperm is a
 * Fisher–Yates shuffle taking `random() % (n − i)` for position i, so the first k entries are fixed
 * after k draws and only the entries a swap has touched need storing. Checked against the
 * positions PEFT drew for the fixtures (tests/fourierft_test.ts).
 * @module
 */

/** Sizes from which PyTorch's randperm switches to 64-bit draws (not reproduced here). */
export const TORCH_RANDPERM_LIMIT = Math.floor(0xffffffff / 20);

/** PyTorch's CPU generator after `manual_seed(seed)`: MT19937's 32-bit outputs. */
export class Mt19937 {
  readonly #state = new Uint32Array(624);
  #next = 624;

  constructor(seed: number) {
    const s = this.#state;
    s[0] = Number(BigInt.asUintN(32, BigInt(seed)));
    for (let i = 1; i < 624; i++) {
      s[i] = (Math.imul(1812433253, s[i - 1] ^ (s[i - 1] >>> 30)) + i) >>> 0;
    }
  }

  /** The next 32-bit output. */
  next(): number {
    const s = this.#state;
    if (this.#next >= 624) {
      for (let i = 0; i < 624; i++) {
        const y = (s[i] & 0x80000000) | (s[(i + 1) % 624] & 0x7fffffff);
        s[i] = s[(i + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.#next = 0;
    }
    let y = s[this.#next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

/**
 * `torch.randperm(n, generator=manual_seed(seed))[:take]`, in O(take) time and memory.
 * @throws RangeError when n reaches {@link TORCH_RANDPERM_LIMIT} or take is not in [0, n].
 */
export function torchRandpermPrefix(n: number, seed: number, take: number): Int32Array {
  if (!(Number.isInteger(n) && n >= 0 && n < TORCH_RANDPERM_LIMIT)) {
    throw new RangeError(`torch randperm: n = ${n} must be an integer below ${TORCH_RANDPERM_LIMIT}`);
  }
  if (!(Number.isInteger(take) && take >= 0 && take <= n)) {
    throw new RangeError(`torch randperm: take = ${take} must be an integer in [0, ${n}]`);
  }
  const rng = new Mt19937(seed);
  const moved = new Map<number, number>(); // entries a swap changed; the others hold their index
  const at = (i: number) => moved.get(i) ?? i;
  const out = new Int32Array(take);
  for (let i = 0; i < take; i++) {
    // torch draws for i < n − 1 only: the last entry is what is left
    const j = i < n - 1 ? i + (rng.next() % (n - i)) : i;
    out[i] = at(j);
    moved.set(j, at(i));
    moved.delete(i);
  }
  return out;
}
