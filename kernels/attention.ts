/**
 * Fused attention: `softmax(scale·q·kᵀ + masks)·v` without materialising the [B, H, T, S]
 * probabilities. One invocation owns one row (a query forward and for dQ, a key for dK and dV),
 * keeps that row's vectors in registers as named `vec4`s (unrolled by code generation: no
 * runtime-indexed local array), and walks the other side in tiles staged in workgroup memory.
 * Forward keeps a running max and sum (online softmax) and stores each query's log-sum-exp;
 * backward recomputes the probabilities from it, with Δᵢ = dOᵢ·Oᵢ standing in for Σⱼ Pᵢⱼ·dPᵢⱼ
 * (true with dropout on the probabilities too).
 *
 * Every kernel takes the same uniform (see {@link ATTENTION_UNIFORM}): sizes, the score scale,
 * the dropout key, and where each operand's heads lie (offset, batch and head strides, row
 * stride) so that q, k and v may be views of one packed projection. Dropout keeps element
 * e = ((b·H + h)·T + i)·S + j of the probabilities when `kept_(e)` (`DROPOUT_MASK`), the
 * mask `dropout` draws over [B, H, T, S].
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { DROPOUT_MASK } from "./elementwise.ts";
import { BUILTINS, GROUP_ID } from "./indexing.ts";

/** Sizes and options fixed in a fused attention kernel's code. */
export interface FusedAttentionShape {
  /** Head size of q and k. */
  d: number;
  /** Head size of v. */
  dv: number;
  /** Invocations per workgroup, one row each. */
  rows: number;
  /** Rows of the other side staged per step (a multiple of 4). */
  tile: number;
  causal: boolean;
  /** A [B, S] padding mask is bound. */
  masked: boolean;
  dropout: boolean;
}

/** The uniform's fields in order (u32 words; `scale` and `dscale` are f32 bits). */
export const ATTENTION_UNIFORM = [
  "b",
  "h",
  "t",
  "s",
  "group",
  "off",
  "blocks",
  "scale",
  "key",
  "threshold",
  "dscale",
  "run",
  "stride",
  "acc",
  "splits",
  "chunk",
  "window",
  ...["q", "k", "v", "o"].flatMap((x) => [`${x}off`, `${x}bs`, `${x}hs`, `${x}ld`]),
] as const;

const FLOATS = new Set(["scale", "dscale"]);
const UNIFORM = `struct P { ${
  ATTENTION_UNIFORM.map((n) => `${n}: ${FLOATS.has(n) ? "f32" : "u32"}`).join(", ")
} }`;

const cache = new Map<string, Kernel>();

function cached(kind: string, shape: FusedAttentionShape, make: () => string): Kernel {
  const { d, dv, rows, tile, causal, masked, dropout } = shape;
  const key = `${kind}:${d}:${dv}:${rows}:${tile}:${causal}:${masked}:${dropout}`;
  let k = cache.get(key);
  if (!k) {
    const flags = `${causal ? "_causal" : ""}${masked ? "_masked" : ""}${dropout ? "_dropout" : ""}`;
    k = { name: `attention.fused_${kind}${flags}`, code: make() };
    cache.set(key, k);
  }
  return k;
}

/**
 * Whether query i sees key `j` under the causal mask: at or before its position (the last query
 * aligned with the last key), and within `p.window` keys of it (sliding-window attention; all of
 * them when the window is 2³² − 1).
 */
const sees = (j: string) => `(${j}) <= i + p.off && i + p.off - (${j}) < p.window`;

const C = ["x", "y", "z", "w"];
const n4 = (n: number) => Math.ceil(n / 4);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** `var <name>c = vec4f(...)` for c < ⌈n/4⌉: `n` floats of `buf` from `base`, zeros past n. */
function loadRow(name: string, buf: string, base: string, n: number): string {
  return range(n4(n)).map((c) => {
    const parts = range(4).map((u) => 4 * c + u < n ? `${buf}[${base} + ${4 * c + u}u]` : "0.0");
    return `var ${name}${c} = vec4f(${parts.join(", ")});`;
  }).join("\n  ");
}

/**
 * Statements storing the first n floats of vec4s `<name>c`, times `factor`, to `buf` from
 * `base`; with `add`, added to what is there when `p.acc` is set.
 */
function storeRow(name: string, buf: string, base: string, n: number, factor: string, add = true): string {
  const lines: string[] = [];
  for (let e = 0; e < n; e++) {
    const v = `${name}${e >> 2}.${C[e & 3]} * ${factor}`;
    const at = `${buf}[${base} + ${e}u]`;
    lines.push(`${at} = ${add ? `select(0.0, ${at}, p.acc != 0u) + ` : ""}${v};`);
  }
  return lines.join("\n    ");
}

/** `var <name>c = vec4f(0.0);` for c < ⌈n/4⌉. */
function zeros(name: string, n: number): string {
  return range(n4(n)).map((c) => `var ${name}${c} = vec4f(0.0);`).join(" ");
}

/** Σ_c dot(<a>c, <shared>[<row>·⌈n/4⌉ + c]). */
function dotShared(a: string, shared: string, row: string, n: number): string {
  return range(n4(n)).map((c) => `dot(${a}${c}, ${shared}[${row} * ${n4(n)}u + ${c}u])`).join(" + ");
}

/** `<acc>c += w·<shared>[<row>·⌈n/4⌉ + c];` for every c. */
function axpyShared(acc: string, w: string, shared: string, row: string, n: number): string {
  return range(n4(n)).map((c) => `${acc}${c} += ${w} * ${shared}[${row} * ${n4(n)}u + ${c}u];`).join(" ");
}

/**
 * Stage `count` rows of `n` floats into workgroup array `shared` (⌈n/4⌉ vec4s a row), rows
 * `first`.. of buffer `buf` from `base`, `p.<operand>ld` apart; rows at or past `limit` are
 * zeros. `rows` invocations share the copy, consecutive ones reading consecutive words.
 */
function stageRows(
  shared: string,
  buf: string,
  operand: string,
  base: string,
  first: string,
  limit: string,
  count: number,
  n: number,
  rows: number,
): string {
  const w = n4(n);
  const parts = range(4).map((u) => `select(0.0, ${buf}[a + ${u}u], c * 4u + ${u}u < ${n}u)`);
  return `for (var x = lid; x < ${count * w}u; x += ${rows}u) {
      let r = x / ${w}u; let c = x % ${w}u;
      var staged = vec4f(0.0);
      if (${first} + r < ${limit}) {
        let a = ${base} + (${first} + r) * p.${operand}ld + c * 4u;
        staged = vec4f(${parts.join(", ")});
      }
      ${shared}[x] = staged;
    }`;
}

/** Header shared by the kernels: bindings, uniform, workgroup arrays, PCG when dropping. */
function header(binds: string[], shape: FusedAttentionShape, shared: string[]): string {
  return `${binds.map((b, i) => `@group(0) @binding(${i}) ${b};`).join("\n")}
${UNIFORM}
@group(0) @binding(${binds.length}) var<uniform> p: P;${shape.dropout ? DROPOUT_MASK + KEEP : ""}
${shared.map((s) => `var<workgroup> ${s};`).join("\n")}`;
}

/**
 * `keep_(e)`: the dropout factor of probability element e, dscale where kept, 0 where dropped. The
 * element index is a u32, as the materialised path's (whose probabilities one binding holds): a fused
 * call over more than 2³² probabilities (B·H·T·S) repeats its mask every 2³² elements.
 */
const KEEP = `
fn keep_(e: u32) -> f32 { return select(0.0, p.dscale, kept_(e)); }`;

/** Bindings q, k, v (read), and the padding mask when masked. */
function inputs(shape: FusedAttentionShape, withV = true): string[] {
  return [
    "var<storage, read> q: array<f32>",
    "var<storage, read> k: array<f32>",
    ...(withV ? ["var<storage, read> v: array<f32>"] : []),
    ...(shape.masked ? ["var<storage, read> mask: array<i32>"] : []),
  ];
}

/**
 * A kernel with one query row per invocation that walks the keys (and values) in staged tiles:
 * `setup` runs first (q's row is at `qb`, the output's at `ob`, both clamped to a real row),
 * `step` once per tile for its keys j0 + jj (jj < tile; `ks`, `vs` and, masked, `ms` hold them),
 * `finish` last. Dispatch B·H·⌈T/rows⌉ workgroups (`blocks` = ⌈T/rows⌉).
 */
function queryRowKernel(
  shape: FusedAttentionShape,
  binds: string[],
  setup: string,
  step: string,
  finish: string,
) {
  const { d, dv, rows: R, tile: BC, causal, masked } = shape;
  const shared = [
    `ks: array<vec4f, ${BC * n4(d)}>`,
    `vs: array<vec4f, ${BC * n4(dv)}>`,
    ...(masked ? [`ms: array<u32, ${BC}>`] : []),
  ];
  return `${header(binds, shape, shared)}
@compute @workgroup_size(${R}) fn main(${BUILTINS}) {
  let blk = ${GROUP_ID};
  if (blk >= p.b * p.h * p.blocks) { return; }
  let bh = blk / p.blocks;
  let i0 = (blk % p.blocks) * ${R}u;
  let bi = bh / p.h; let hi = bh % p.h; let kh = hi / p.group;
  let i = i0 + lid;
  let row = min(i, p.t - 1u);
  let rowE = bh * p.t + i;
  let qb = p.qoff + bi * p.qbs + hi * p.qhs + row * p.qld;
  let ob = p.ooff + bi * p.obs + hi * p.ohs + row * p.old;
  let kb = p.koff + bi * p.kbs + kh * p.khs;
  let vb = p.voff + bi * p.vbs + kh * p.vhs;
  ${setup}
  // causal: the tile's last query sees keys up to its position + off
  let jEnd = ${causal ? `min(p.s, min(i0 + ${R}u, p.t) + p.off)` : "p.s"};
  for (var j0 = 0u; j0 < jEnd; j0 += ${BC}u) {
    workgroupBarrier();
    ${stageRows("ks", "k", "k", "kb", "j0", "p.s", BC, d, R)}
    ${stageRows("vs", "v", "v", "vb", "j0", "p.s", BC, dv, R)}
    ${
    masked
      ? `for (var x = lid; x < ${BC}u; x += ${R}u) {
      ms[x] = select(0u, 1u, j0 + x < p.s && mask[bi * p.s + min(j0 + x, p.s - 1u)] != 0);
    }`
      : ""
  }
    workgroupBarrier();
    ${step}
  }
  ${finish}
}`;
}

/**
 * Forward: one query row per invocation; writes the output at o's placement and the row's
 * log-sum-exp of the scaled, masked scores to `stats[(b·H + h)·T + i]` (0 for a row with
 * every key masked, whose output is zeros). Bindings q, k, v, [mask], out, stats.
 */
export function fusedAttentionForwardKernel(shape: FusedAttentionShape): Kernel {
  return cached("forward", shape, () => {
    const { d, dv, tile: BC, causal, masked, dropout } = shape;
    const binds = [
      ...inputs(shape),
      "var<storage, read_write> out: array<f32>",
      "var<storage, read_write> stats: array<f32>",
    ];
    // four keys at a time: their scores, whether each is allowed
    const scores = range(4).map((u) => {
      const conds = [
        `j + ${u}u < p.s`,
        causal ? sees(`j + ${u}u`) : "",
        masked ? `ms[jj + ${u}u] != 0u` : "",
      ];
      return `let s${u} = (${dotShared("q", "ks", `(jj + ${u}u)`, d)}) * p.scale;
      let a${u} = ${conds.filter((c) => c).join(" && ")};`;
    }).join("\n      ");
    // the sum takes every allowed probability, the values only those dropout keeps
    const weights = range(4).map((u) =>
      `let w${u} = select(0.0, exp(s${u} - m), a${u});
      l += w${u};
      let pw${u} = w${u}${dropout ? ` * keep_(rowE * p.s + j + ${u}u)` : ""};`
    ).join("\n      ");
    const accumulate = range(n4(dv)).map((c) =>
      `o${c} += ${range(4).map((u) => `pw${u} * vs[(jj + ${u}u) * ${n4(dv)}u + ${c}u]`).join(" + ")};`
    ).join("\n      ");
    const setup = `${loadRow("q", "q", "qb", d)}
  ${zeros("o", dv)}
  var m = -3.0e38;
  var l = 0.0;`;
    const step = `for (var jj = 0u; jj < ${BC}u; jj += 4u) {
      let j = j0 + jj;
      ${scores}
      let mc = max(max(select(-3.0e38, s0, a0), select(-3.0e38, s1, a1)),
                   max(select(-3.0e38, s2, a2), select(-3.0e38, s3, a3)));
      if (mc > m) {
        let corr = exp(m - mc);
        l *= corr;
        ${range(n4(dv)).map((c) => `o${c} *= corr;`).join(" ")}
        m = mc;
      }
      ${weights}
      ${accumulate}
    }`;
    const finish = `if (i < p.t) {
    let inv = select(0.0, 1.0 / l, l > 0.0);
    ${storeRow("o", "out", "ob", dv, "inv", false)}
    stats[rowE] = select(0.0, m + log(l), l > 0.0);
  }`;
    return queryRowKernel(shape, binds, setup, step, finish);
  });
}

/**
 * dQ: one query row per invocation. Writes Δᵢ = dOᵢ·Oᵢ to `stats[B·H·T + row]` for the dK
 * pass, then dQᵢ = scale·Σⱼ Pᵢⱼ(dPᵢⱼ − Δᵢ)·kⱼ at q's placement (adding when `acc`).
 * Bindings q, k, v, [mask], out, dout (both at o's placement), stats, dq.
 */
export function fusedAttentionGradQKernel(shape: FusedAttentionShape): Kernel {
  return cached("grad_q", shape, () => {
    const { d, dv, tile: BC, causal, masked, dropout } = shape;
    const binds = [
      ...inputs(shape),
      "var<storage, read> out: array<f32>",
      "var<storage, read> dout: array<f32>",
      "var<storage, read_write> stats: array<f32>",
      "var<storage, read_write> dq: array<f32>",
    ];
    const conds = ["j < p.s", causal ? sees("j") : "", masked ? "ms[jj] != 0u" : ""].filter((c) => c);
    const setup = `${loadRow("q", "q", "qb", d)}
  ${loadRow("g", "dout", "ob", dv)}
  ${loadRow("y", "out", "ob", dv)}
  let delta = ${range(n4(dv)).map((c) => `dot(g${c}, y${c})`).join(" + ")};
  let lse = stats[bh * p.t + row];
  if (i < p.t) { stats[p.b * p.h * p.t + rowE] = delta; }
  ${zeros("dq", d)}`;
    const step = `for (var jj = 0u; jj < ${BC}u; jj++) {
      let j = j0 + jj;
      let pr = select(0.0, exp((${dotShared("q", "ks", "jj", d)}) * p.scale - lse), ${conds.join(" && ")});
      var dp = ${dotShared("g", "vs", "jj", dv)};
      ${dropout ? "dp *= keep_(rowE * p.s + j);" : ""}
      let ds = pr * (dp - delta);
      ${axpyShared("dq", "ds", "ks", "jj", d)}
    }`;
    const finish = `if (i < p.t) {
    ${storeRow("dq", "dq", "qb", d, "p.scale")}
  }`;
    return queryRowKernel(shape, binds, setup, step, finish);
  });
}

/**
 * dK or dV: one key row per invocation, summing over the query heads that share its key/value
 * head and over their queries (staged in tiles): dVⱼ = Σᵢ P̃ᵢⱼ·dOᵢ with P̃ the dropped
 * probabilities, or dKⱼ = scale·Σᵢ Pᵢⱼ(dPᵢⱼ − Δᵢ)·qᵢ. Bindings q, k, [v (dK only)], [mask],
 * dout, stats, grad. Dispatch B·Hkv·⌈S/rows⌉·splits workgroups (`blocks` = ⌈S/rows⌉; `h` in the
 * uniform is the query heads H). With `splits` = 1 each writes its rows at k's or v's placement
 * (adding when `acc`); with more, workgroup part p sums queries [p·chunk, (p+1)·chunk) only and
 * writes that partial sum to `grad[p][b][kv head][key][·]` for {@link fusedAttentionReduceKernel}
 * (more workgroups when the batch and the key/value heads are few, as at long sequences).
 */
export function fusedAttentionGradKVKernel(which: "k" | "v", shape: FusedAttentionShape): Kernel {
  return cached(`grad_${which}`, shape, () => {
    const { d, dv, rows: R, tile: BC, causal, masked, dropout } = shape;
    const forK = which === "k";
    const n = forK ? d : dv;
    const binds = [
      ...inputs(shape, forK),
      "var<storage, read> dout: array<f32>",
      "var<storage, read> stats: array<f32>",
      "var<storage, read_write> grad: array<f32>",
    ];
    const shared = [
      `qs: array<vec4f, ${BC * n4(d)}>`,
      `gs: array<vec4f, ${BC * n4(dv)}>`,
      `ls: array<f32, ${BC}>`,
      ...(forK ? [`ds: array<f32, ${BC}>`] : []),
    ];
    const conds = ["live", "i < iEnd", causal ? sees("j") : ""].filter((c) => c);
    const keep = dropout ? "f *= keep_((bh * p.t + i) * p.s + j);" : "";
    const body = forK
      ? `var f = ${dotShared("vr", "gs", "ii", dv)};
        ${keep}
        let w = pr * (f - ds[ii]);
        ${axpyShared("acc", "w", "qs", "ii", d)}`
      : `var f = pr;
        ${keep}
        ${axpyShared("acc", "f", "gs", "ii", dv)}`;
    const factor = forK ? "p.scale" : "1.0";
    return `${header(binds, shape, shared)}
@compute @workgroup_size(${R}) fn main(${BUILTINS}) {
  let blk = ${GROUP_ID};
  let hkv = p.h / p.group;
  let perHead = p.blocks * p.splits;
  if (blk >= p.b * hkv * perHead) { return; }
  let bk = blk / perHead;
  let j0 = ((blk % perHead) / p.splits) * ${R}u;
  let part = blk % p.splits;
  let bi = bk / hkv; let kh = bk % hkv;
  let j = j0 + lid;
  let key = min(j, p.s - 1u);
  let live = j < p.s${masked ? " && mask[bi * p.s + key] != 0" : ""};
  let kb = p.koff + bi * p.kbs + kh * p.khs + key * p.kld;
  ${loadRow("kr", "k", "kb", d)}
  let vb = p.voff + bi * p.vbs + kh * p.vhs + key * p.vld;
  ${forK ? loadRow("vr", "v", "vb", dv) : ""}
  ${zeros("acc", n)}
  // this part's queries; causal: none before the first key's position − off
  let iEnd = min(p.t, (part + 1u) * p.chunk);
  let iStart = max(part * p.chunk, ${causal ? "select(0u, j0 - p.off, j0 > p.off)" : "0u"});
  for (var hg = 0u; hg < p.group; hg++) {
    let hi = kh * p.group + hg;
    let bh = bi * p.h + hi;
    let qb = p.qoff + bi * p.qbs + hi * p.qhs;
    let ob = p.ooff + bi * p.obs + hi * p.ohs;
    for (var i0 = iStart; i0 < iEnd; i0 += ${BC}u) {
      workgroupBarrier();
      ${stageRows("qs", "q", "q", "qb", "i0", "iEnd", BC, d, R)}
      ${stageRows("gs", "dout", "o", "ob", "i0", "iEnd", BC, dv, R)}
      for (var x = lid; x < ${BC}u; x += ${R}u) {
        let r = bh * p.t + min(i0 + x, p.t - 1u);
        ls[x] = stats[r];
        ${forK ? "ds[x] = stats[p.b * p.h * p.t + r];" : ""}
      }
      workgroupBarrier();
      for (var ii = 0u; ii < ${BC}u; ii++) {
        let i = i0 + ii;
        let pr = select(0.0, exp((${dotShared("kr", "qs", "ii", d)}) * p.scale - ls[ii]), ${
      conds.join(" && ")
    });
        ${body}
      }
    }
  }
  if (j < p.s) {
    if (p.splits == 1u) {
      ${storeRow("acc", "grad", forK ? "kb" : "vb", n, factor)}
    } else {
      let at = (((part * p.b + bi) * hkv + kh) * p.s + j) * ${n}u;
      ${storeRow("acc", "grad", "at", n, factor, false)}
    }
  }
}`;
  });
}

/**
 * The partial sums of a split dK or dV pass (`splits` of them, [splits, B, Hkv, S, n]) added
 * up into k's or v's placement (adding to what is there when `acc`). Bindings partials, grad;
 * one invocation per element, 256 a workgroup.
 */
export function fusedAttentionReduceKernel(which: "k" | "v", n: number): Kernel {
  const key = `reduce_${which}:${n}`;
  let k = cache.get(key);
  if (!k) {
    k = {
      name: `attention.fused_reduce_${which}`,
      code: `@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
${UNIFORM}
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  let idx = ${GROUP_ID} * 256u + lid;
  let hkv = p.h / p.group;
  let total = p.b * hkv * p.s * ${n}u;
  if (idx >= total) { return; }
  var sum = 0.0;
  for (var part = 0u; part < p.splits; part++) { sum += partials[part * total + idx]; }
  let e = idx % ${n}u; let row = idx / ${n}u;
  let j = row % p.s; let bk = row / p.s;
  let at = p.${which}off + (bk / hkv) * p.${which}bs + (bk % hkv) * p.${which}hs + j * p.${which}ld + e;
  grad[at] = select(0.0, grad[at], p.acc != 0u) + sum;
}`,
    };
    cache.set(key, k);
  }
  return k;
}
