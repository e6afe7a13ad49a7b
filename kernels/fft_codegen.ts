/**
 * Code generation for complex FFTs done inside one workgroup, the engine under the fast
 * Hartley transform (kernels/fht.ts). A workgroup transforms `lines` complex lines of length
 * `n` as a chain of mixed-radix Stockham passes (pass with radix R after radices of product
 * Ns: v[r] = a[j + r·n/R]·w_n^{r·(j mod Ns)·n/(Ns·R)}, v = DFT_R(v),
 * b[(j/Ns)·Ns·R + j mod Ns + r·Ns] = v[r]).
 *
 * Data lives in NAMED registers (every per-invocation loop is unrolled here in TypeScript:
 * SPEC §3 forbids runtime-indexed private arrays); workgroup memory only carries the exchange
 * between passes: write the outputs, barrier, read the next pass's inputs, barrier. In `split`
 * mode only one real half fits (real parts, then imaginary parts), which doubles the longest
 * line that fits in workgroup memory; with `pad`, one word in 32 is skipped so the stride-R
 * writes of early passes do not collide on banks. Small radices (factors ≤ 13) are unrolled
 * butterflies with constant-folded coefficients; a prime radix from 17 to 64 is done per output
 * pair (s, R − s): a runtime loop over its inputs, read straight from workgroup memory.
 *
 * The generated `main` (or, with `entry: "function"`, `fn fft_run(wg: u32, lid: u32)` for a
 * caller's own entry point to call in uniform control flow, e.g. once per loop trip) calls
 * three hooks the caller defines in its module header:
 * - `fft_load(wg: u32, line: u32, pos: u32) -> vec2f`: element `pos` of local line `line`
 *   (the caller maps workgroup `wg` and the line to its data, zero when out of range);
 * - `fft_map(wg, line, pos, v: vec2f) -> vec2f`: applied to the input of every stage after
 *   the first (a second FFT of the same length chained in the same workgroup, e.g. Bluestein);
 * - `fft_store(wg, line, k, t0: vec2f, ...)`: output `k` of a line, with the values at the tap
 *   positions (e.g. k and (n − k) mod n for the Hartley unpack).
 * Twiddles come from a storage table `tw: array<vec2f>` holding w_N^m = exp(−2πi·m/N), computed
 * in float64 on the CPU (WGSL sin/cos are not accurate enough).
 * @module
 */

/** Largest prime radix done as an unrolled butterfly; larger primes use the loop form. */
export const MAX_UNROLLED_PRIME = 13;
/** Largest prime radix supported at all (above it, use Bluestein). */
export const MAX_LOOP_PRIME = 64;

/** One FFT of length `n` as a chain of radix passes. */
export interface FftStage {
  /** Radices in pass order; their product is the line length. */
  readonly radices: readonly number[];
  /** The table `tw` holds w_N for N = n·twStride, so w_n^e = tw[e·twStride]. */
  readonly twStride: number;
}

/** Everything that shapes the generated workgroup FFT. */
export interface WorkgroupFftSpec {
  /** Line length. */
  readonly n: number;
  /** Lines per workgroup. */
  readonly lines: number;
  /** Distance between lines in workgroup memory (≥ n; n + 1 avoids bank conflicts). */
  readonly lineStride: number;
  /** Invocations per workgroup. */
  readonly threads: number;
  /** Exchange real and imaginary halves one after the other (half the workgroup memory). */
  readonly split: boolean;
  /**
   * Skip one word every 32 in workgroup memory (index i → i + i/32): the stride-R writes of
   * early Stockham passes then hit distinct banks.
   */
  readonly pad: boolean;
  /** One stage, or several chained through `fft_map`. */
  readonly stages: readonly FftStage[];
  /** First loads walk lines fastest (strided columns: coalesced across lines). */
  readonly loadLineFastest: boolean;
  /** Outputs per line handed to `fft_store` (k = 0..storeCount−1, ≤ n). */
  readonly storeCount: number;
  /** Outputs walk lines fastest. */
  readonly storeLineFastest: boolean;
  /**
   * The values handed to `fft_store` for output k of local line `line`: WGSL u32 expressions
   * [line, position] of each tap (e.g. the same line at k and at (n − k) mod n).
   */
  readonly taps: readonly ((line: string, k: string) => readonly [string, string])[];
  /** `main` (default): the entry point; `function`: `fft_run(wg, lid)` for the caller's own. */
  readonly entry?: "main" | "function";
}

/** Words of workgroup memory per real half: lines·lineStride, plus the padding. */
export function halfWords(lines: number, lineStride: number, pad: boolean): number {
  const w = lines * lineStride;
  return pad ? w + Math.ceil(w / 32) : w;
}

/** Smallest prime factor of k ≥ 2. */
export function smallestPrime(k: number): number {
  for (let p = 2; p * p <= k; p++) if (k % p === 0) return p;
  return k;
}

/** Prime factors of k ≥ 1, ascending, with multiplicity. */
export function primeFactors(k: number): number[] {
  const out: number[] = [];
  while (k > 1) {
    const p = smallestPrime(k);
    out.push(p);
    k /= p;
  }
  return out;
}

/**
 * Radices for a line of length n whose prime factors are all ≤ {@link MAX_LOOP_PRIME}: powers
 * of two in 16s (then 8, 4 or 2), threes in 9s, other small primes alone, loop-form primes
 * last (so that they read their inputs from workgroup memory).
 */
export function chooseRadices(n: number): number[] {
  const f = primeFactors(n);
  const big = f.find((p) => p > MAX_LOOP_PRIME);
  if (big) throw new Error(`chooseRadices: prime factor ${big} of ${n} is above ${MAX_LOOP_PRIME}`);
  let twos = f.filter((p) => p === 2).length;
  let threes = f.filter((p) => p === 3).length;
  const out: number[] = [];
  while (twos >= 4 && twos !== 5) {
    out.push(16);
    twos -= 4;
  }
  if (twos === 5) out.push(8, 4);
  else if (twos > 0) out.push(2 ** twos);
  while (threes >= 2) {
    out.push(9);
    threes -= 2;
  }
  if (threes) out.push(3);
  for (const p of f) if (p > 3 && p <= MAX_UNROLLED_PRIME) out.push(p);
  for (const p of f) if (p > MAX_UNROLLED_PRIME) out.push(p);
  return out;
}

/** A float literal exact to f32 precision. */
function lit(c: number): string {
  const s = c.toPrecision(10);
  return c < 0 ? `(${s})` : s;
}

/** Emits WGSL statements for a forward DFT of named complex values with constant coefficients. */
class DftEmitter {
  #id = 0;
  constructor(readonly out: string[], readonly prefix: string) {}

  #let(expr: string): string {
    const name = `${this.prefix}${this.#id++}`;
    this.out.push(`let ${name} = ${expr};`);
    return name;
  }

  /** Outputs X[k] = Σ_r x[r]·exp(−2πi·rk/R) as names of lets (or of the inputs). */
  dft(xs: readonly string[]): string[] {
    const R = xs.length;
    if (R === 1) return [...xs];
    if (R === 2) return [this.#let(`${xs[0]} + ${xs[1]}`), this.#let(`${xs[0]} - ${xs[1]}`)];
    const p = smallestPrime(R);
    if (p === R) return this.#prime(xs);
    // Decimation in time, R = P·Q: Q-point DFTs of x[a + P·q], twiddles w_R^{a·k2}, P-point DFTs.
    const P = p, Q = R / p;
    const sub: string[][] = [];
    for (let a = 0; a < P; a++) sub.push(this.dft(Array.from({ length: Q }, (_, q) => xs[a + P * q])));
    const out = new Array<string>(R);
    for (let k2 = 0; k2 < Q; k2++) {
      const col = sub.map((y, a) => this.#twiddle(y[k2], (a * k2) % R, R));
      this.dft(col).forEach((z, k1) => out[k2 + Q * k1] = z);
    }
    return out;
  }

  /** x·exp(−2πi·m/R), with the eighth-turns spelled out. */
  #twiddle(x: string, m: number, R: number): string {
    if (m === 0) return x;
    const eighth = (8 * m) % R === 0 ? (8 * m) / R : -1;
    const h = lit(Math.SQRT1_2);
    switch (eighth) {
      case 1:
        return this.#let(`vec2f(${x}.x + ${x}.y, ${x}.y - ${x}.x) * ${h}`);
      case 2:
        return this.#let(`vec2f(${x}.y, -${x}.x)`);
      case 3:
        return this.#let(`vec2f(${x}.y - ${x}.x, -${x}.x - ${x}.y) * ${h}`);
      case 4:
        return this.#let(`-${x}`);
      case 5:
        return this.#let(`vec2f(-${x}.x - ${x}.y, ${x}.x - ${x}.y) * ${h}`);
      case 6:
        return this.#let(`vec2f(-${x}.y, ${x}.x)`);
      case 7:
        return this.#let(`vec2f(${x}.x - ${x}.y, ${x}.x + ${x}.y) * ${h}`);
    }
    const c = lit(Math.cos(2 * Math.PI * m / R)), s = lit(-Math.sin(2 * Math.PI * m / R));
    return this.#let(`vec2f(${x}.x * ${c} - ${x}.y * ${s}, ${x}.x * ${s} + ${x}.y * ${c})`);
  }

  /** Odd prime R through the symmetric sums s_r = x_r + x_{R−r}, d_r = x_r − x_{R−r}. */
  #prime(xs: readonly string[]): string[] {
    const R = xs.length, h = (R - 1) / 2;
    const s: string[] = [], d: string[] = [];
    for (let r = 1; r <= h; r++) {
      s.push(this.#let(`${xs[r]} + ${xs[R - r]}`));
      d.push(this.#let(`${xs[r]} - ${xs[R - r]}`));
    }
    const out = new Array<string>(R);
    out[0] = this.#let([xs[0], ...s].join(" + "));
    for (let k = 1; k <= h; k++) {
      const a = [xs[0], ...s.map((v, i) => `${v} * ${lit(Math.cos(2 * Math.PI * (i + 1) * k / R))}`)];
      const b = d.map((v, i) => `${v} * ${lit(Math.sin(2 * Math.PI * (i + 1) * k / R))}`);
      const A = this.#let(a.join(" + ")), B = this.#let(b.join(" + "));
      out[k] = this.#let(`${A} + vec2f(${B}.y, -${B}.x)`);
      out[R - k] = this.#let(`${A} + vec2f(-${B}.y, ${B}.x)`);
    }
    return out;
  }
}

/** A value in a register with its place in workgroup memory. */
interface Slot {
  readonly v: string;
  /** Index in workgroup memory. */
  readonly pos: string;
  /** Position within its line. */
  readonly local: string;
  readonly guard: string | null;
}

/** Per-invocation work item u of a pass: index lets and guard. */
interface Item {
  readonly line: string;
  readonly j: string;
  readonly guard: string | null;
}

type Half = "x" | "y" | "xy";

/** Generated code of a workgroup FFT. */
export interface WorkgroupFftCode {
  /** Workgroup-memory declarations, `cmul` and the `main` entry point. */
  readonly code: string;
  /** Whether the code reads the twiddle table `tw` (a single-pass FFT does not). */
  readonly usesTwiddles: boolean;
}

/** Generates a workgroup FFT (see the module doc for the hooks it calls). */
export function workgroupFftCode(spec: WorkgroupFftSpec): WorkgroupFftCode {
  const code = new FftGen(spec).generate();
  return { code, usesTwiddles: /\btw\[/.test(code) };
}

class FftGen {
  readonly decls: string[] = [];
  readonly body: string[] = [];
  #id = 0;

  constructor(readonly s: WorkgroupFftSpec) {
    for (const st of s.stages) {
      if (st.radices.reduce((a, b) => a * b, 1) !== s.n) {
        throw new Error(`workgroup FFT: radices ${st.radices.join("·")} do not multiply to ${s.n}`);
      }
    }
    if (s.storeCount > s.n) throw new Error(`workgroup FFT: ${s.storeCount} outputs of a length-${s.n} line`);
  }

  fresh(p: string): string {
    return `${p}${this.#id++}`;
  }

  emit(line: string): void {
    this.body.push(`  ${line}`);
  }

  /** Statements under a guard (grouped in one `if`). */
  guarded(guard: string | null, lines: readonly string[]): void {
    if (lines.length === 0) return;
    if (!guard) lines.forEach((l) => this.emit(l));
    else {
      this.emit(`if (${guard}) {`);
      lines.forEach((l) => this.emit(`  ${l}`));
      this.emit(`}`);
    }
  }

  declare(prefix: string): string {
    const v = this.fresh(prefix);
    this.decls.push(`  var ${v}: vec2f;`);
    return v;
  }

  /** Index into workgroup memory of element `pos` of local line `line`. */
  at(line: string, pos: string): string {
    const i = this.s.lines === 1 ? pos : `${line} * ${this.s.lineStride}u + ${pos}`;
    return this.s.pad ? `sp(${i})` : i;
  }

  /** Work items covering `perLine` items of each line, `threads` at a time. */
  items(perLine: number, lineFastest: boolean): Item[] {
    const { lines: B, threads: T } = this.s;
    const total = B * perLine, out: Item[] = [];
    for (let u = 0; u * T < total; u++) {
      const b = this.fresh("b");
      this.emit(`let ${b} = lid + ${u * T}u;`);
      let line = "0u", j = b;
      if (B > 1) {
        line = this.fresh("l");
        j = this.fresh("j");
        if (lineFastest) this.emit(`let ${line} = ${b} % ${B}u; let ${j} = ${b} / ${B}u;`);
        else this.emit(`let ${line} = ${b} / ${perLine}u; let ${j} = ${b} % ${perLine}u;`);
      }
      const guard = total % T === 0 || (u + 1) * T <= total ? null : `${b} < ${total}u`;
      out.push({ line, j, guard });
    }
    return out;
  }

  shared(half: "x" | "y"): string {
    return this.s.split ? "sh" : half === "x" ? "shRe" : "shIm";
  }

  /** Read a complex value (or one half) from workgroup memory into `v`. */
  readInto(v: string, idx: string, half: Half): string {
    if (half === "xy") return `${v} = vec2f(shRe[${idx}], shIm[${idx}]);`;
    return `${v}.${half} = sh[${idx}];`;
  }

  /**
   * Write `from` to workgroup memory, then `consume` each half; barriers between, and after
   * the last consume unless `last`.
   */
  exchange(from: readonly Slot[], consume: (half: Half) => void, last: boolean): void {
    const halves: Half[] = this.s.split ? ["x", "y"] : ["xy"];
    halves.forEach((half, i) => {
      const byGuard = new Map<string | null, string[]>();
      for (const sl of from) {
        const list = byGuard.get(sl.guard) ?? [];
        if (half === "xy") list.push(`shRe[${sl.pos}] = ${sl.v}.x; shIm[${sl.pos}] = ${sl.v}.y;`);
        else list.push(`sh[${sl.pos}] = ${sl.v}.${half};`);
        byGuard.set(sl.guard, list);
      }
      for (const [g, list] of byGuard) this.guarded(g, list);
      this.emit("workgroupBarrier();");
      consume(half);
      if (!(last && i === halves.length - 1)) this.emit("workgroupBarrier();");
    });
  }

  /** Natural-order load of every element of the lines from `fft_load`. */
  naturalLoad(): Slot[] {
    const slots: Slot[] = [];
    for (const it of this.items(this.s.n, this.s.loadLineFastest)) {
      const v = this.declare("x");
      this.guarded(it.guard, [`${v} = fft_load(wg, ${it.line}, ${it.j});`]);
      slots.push({ v, pos: this.at(it.line, it.j), local: it.j, guard: it.guard });
    }
    return slots;
  }

  /** Output slot of a Stockham pass for item `it`, output r (r a number or a u32 expression). */
  outSlot(v: string, it: Item, r: number | string, R: number, Ns: number): Slot {
    const base = Ns === 1 ? `${it.j} * ${R}u` : `(${it.j} / ${Ns}u) * ${Ns * R}u + ${it.j} % ${Ns}u`;
    const local = typeof r === "number" ? `${base} + ${r * Ns}u` : `${base} + ${r} * ${Ns}u`;
    return { v, pos: this.at(it.line, local), local, guard: it.guard };
  }

  /** An unrolled radix-R pass; inputs from `fft_load` when `prev` is null. */
  unrolledPass(prev: Slot[] | null, R: number, Ns: number, stride: number, mapInputs: boolean): Slot[] {
    const n = this.s.n, m = n / R;
    const items = this.items(m, prev === null && this.s.loadLineFastest);
    const ins = items.map(() => Array.from({ length: R }, () => this.declare("x")));
    const inPos = (it: Item, r: number) => `${it.j} + ${r * m}u`;
    if (prev === null) {
      items.forEach((it, u) =>
        this.guarded(it.guard, ins[u].map((v, r) => `${v} = fft_load(wg, ${it.line}, ${inPos(it, r)});`))
      );
    } else {
      this.exchange(prev, (half) => {
        items.forEach((it, u) =>
          this.guarded(it.guard, ins[u].map((v, r) => this.readInto(v, this.at(it.line, inPos(it, r)), half)))
        );
      }, false);
    }
    const outs: Slot[] = [];
    items.forEach((it, u) => {
      const lines: string[] = [];
      const xs = ins[u];
      if (mapInputs) {
        xs.forEach((v, r) => lines.push(`${v} = fft_map(wg, ${it.line}, ${inPos(it, r)}, ${v});`));
      }
      if (Ns > 1) {
        const e = this.fresh("e");
        lines.push(`let ${e} = (${it.j} % ${Ns}u) * ${(n / (Ns * R)) * stride}u;`);
        for (let r = 1; r < R; r++) lines.push(`${xs[r]} = cmul(${xs[r]}, tw[${r}u * ${e}]);`);
      }
      const dft = new DftEmitter(lines, this.fresh("t") + "_");
      const ys = dft.dft(xs);
      ys.forEach((y, r) => {
        const o = this.declare("y");
        lines.push(`${o} = ${y};`);
        outs.push(this.outSlot(o, it, r, R, Ns));
      });
      this.guarded(it.guard, lines);
    });
    return outs;
  }

  /**
   * A prime radix-R pass in per-output form: one work item per output pair (s, R − s) of a
   * butterfly (s ≤ (R−1)/2), V[s] = Σ_r v[r]·w_R^{rs} and V[R−s] = Σ_r v[r]·conj(w_R^{rs}),
   * as a runtime loop over r reading workgroup memory. The Stockham twiddle is applied to
   * `prev` on its way into workgroup memory (from its destination j + r·n/R), so the loop
   * reads only the R roots w_R^{rs mod R} (always cache hits).
   */
  loopPass(prev: Slot[], R: number, Ns: number, stride: number): Slot[] {
    const { n, lines: B, threads: T } = this.s;
    const m = n / R, h = (R + 1) / 2, total = B * m * h;
    if (Ns > 1) {
      for (const sl of prev) {
        const p = `(${sl.local})`;
        const tw = `tw[(${p} / ${m}u) * ((${p} % ${m}u) % ${Ns}u) * ${(n / (Ns * R)) * stride}u]`;
        this.guarded(sl.guard, [`${sl.v} = cmul(${sl.v}, ${tw});`]);
      }
    }
    const items: (Item & { s: string; lo: string; hi: string })[] = [];
    for (let u = 0; u * T < total; u++) {
      const q = this.fresh("b"), line = this.fresh("l"), s = this.fresh("s"), j = this.fresh("j");
      this.emit(`let ${q} = lid + ${u * T}u;`);
      this.emit(`let ${line} = ${B > 1 ? `${q} / ${m * h}u` : "0u"};`);
      this.emit(`let ${s} = (${q} % ${m * h}u) / ${m}u; let ${j} = ${q} % ${m}u;`);
      const guard = total % T === 0 || (u + 1) * T <= total ? null : `${q} < ${total}u`;
      items.push({ line, j, s, guard, lo: this.declare("y"), hi: this.declare("y") });
    }
    const K = (n / R) * stride;
    this.exchange(prev, (half) => {
      const L: string[] = ["{"];
      items.forEach((_, u) => L.push(`  var e${u} = 0u;`));
      L.push(`  for (var r = 0u; r < ${R}u; r++) {`);
      items.forEach((it, u) => {
        const idx = this.at(it.line, `${it.j} + r * ${m}u`);
        const a = `a${u}`, w = `w${u}`;
        const upd = [`let ${w} = tw[e${u} * ${K}u];`];
        if (half === "xy") {
          upd.push(`let ${a} = vec2f(shRe[${idx}], shIm[${idx}]);`);
          upd.push(`let p${u} = ${a} * ${w}.x; let q${u} = ${a}.yx * ${w}.y;`);
          // a·w = (ax·wx − ay·wy, ay·wx + ax·wy); a·conj(w) = (ax·wx + ay·wy, ay·wx − ax·wy)
          upd.push(`${it.lo} += vec2f(p${u}.x - q${u}.x, p${u}.y + q${u}.y);`);
          upd.push(`${it.hi} += vec2f(p${u}.x + q${u}.x, p${u}.y - q${u}.y);`);
        } else if (half === "x") {
          upd.push(
            `let ${a} = sh[${idx}] * ${w};`,
            `${it.lo} += ${a};`,
            `${it.hi} += vec2f(${a}.x, -${a}.y);`,
          );
        } else {
          upd.push(`let ${a} = sh[${idx}] * ${w};`, `${it.lo} += vec2f(-${a}.y, ${a}.x);`);
          upd.push(`${it.hi} += ${a}.yx;`);
        }
        upd.push(`e${u} += ${it.s}; if (e${u} >= ${R}u) { e${u} -= ${R}u; }`);
        if (it.guard) L.push(`    if (${it.guard}) {`, ...upd.map((l) => `      ${l}`), `    }`);
        else L.push(...upd.map((l) => `    ${l}`));
      });
      L.push(`  }`, `}`);
      L.forEach((l) => this.emit(l));
    }, false);
    return items.flatMap((it) => {
      const hiGuard = it.guard ? `${it.guard} && ${it.s} != 0u` : `${it.s} != 0u`;
      return [
        this.outSlot(it.lo, it, it.s, R, Ns),
        { ...this.outSlot(it.hi, it, `(${R}u - ${it.s})`, R, Ns), guard: hiGuard },
      ];
    });
  }

  generate(): string {
    const s = this.s;
    let prev: Slot[] | null = null;
    s.stages.forEach((st, si) => {
      let Ns = 1;
      st.radices.forEach((R, pi) => {
        const mapInputs = si > 0 && pi === 0;
        if (R > MAX_UNROLLED_PRIME && smallestPrime(R) === R) {
          if (mapInputs) {
            throw new Error("workgroup FFT: a chained stage cannot start with a loop-form radix");
          }
          prev = this.loopPass(prev ?? this.naturalLoad(), R, Ns, st.twStride);
        } else {
          if (smallestPrime(R) > MAX_UNROLLED_PRIME) throw new Error(`workgroup FFT: radix ${R} unsupported`);
          prev = this.unrolledPass(prev, R, Ns, st.twStride, mapInputs);
        }
        Ns *= R;
      });
      if (st.radices.length === 0 && si > 0) throw new Error("workgroup FFT: a chained stage needs a pass");
    });
    const final: Slot[] = prev ?? this.naturalLoad();
    const items = this.items(s.storeCount, s.storeLineFastest);
    const taps = items.map(() => s.taps.map(() => this.declare("z")));
    this.exchange(final, (half) => {
      items.forEach((it, u) =>
        this.guarded(
          it.guard,
          taps[u].map((t, i) => this.readInto(t, this.at(...s.taps[i](it.line, it.j)), half)),
        )
      );
    }, true);
    items.forEach((it, u) =>
      this.guarded(it.guard, [`fft_store(wg, ${it.line}, ${it.j}${taps[u].map((t) => `, ${t}`).join("")});`])
    );
    const words = halfWords(s.lines, s.lineStride, s.pad);
    const shared = s.split
      ? `var<workgroup> sh: array<f32, ${words}>;`
      : `var<workgroup> shRe: array<f32, ${words}>;\nvar<workgroup> shIm: array<f32, ${words}>;`;
    const sp = s.pad ? `\nfn sp(i: u32) -> u32 {\n  return i + (i >> 5u);\n}\n` : "";
    return `${shared}
${sp}
fn cmul(a: vec2f, b: vec2f) -> vec2f {
  return vec2f(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

${
      s.entry === "function" ? "fn fft_run(wg: u32, lid: u32) {" : `@compute @workgroup_size(${s.threads})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let wg = wid.x + wid.y * nwg.x;`
    }
${this.decls.join("\n")}
${this.body.join("\n")}
}
`;
  }
}
