/**
 * Float64 CPU references of the decoder families (GPT-2, LLaMA), written straight from the
 * transformers definitions with the tensor references (lib/tensor/reference/), to check the
 * GPU models on inputs the PyTorch fixtures do not cover (padding, other checkpoints, the
 * pretrained gpt2-brown). Slow: small inputs only.
 * @module
 */
import type { Gpt2Config, LlamaConfig } from "../io/hf_config.ts";
import type { TensorSource } from "../io/safetensors.ts";
import { ropeInverseFrequencies64, ropeScale } from "../nn/rope.ts";
import { ACTIVATIONS } from "../tensor/reference/activations.ts";
import { attentionForward, ropeForward } from "../tensor/reference/attention.ts";
import { normForward } from "../tensor/reference/norm.ts";
import type { ModelShapes } from "./shapes.ts";

/** Parameters by key (as in `shapes`), float64; tied keys resolved to their tensor. */
export type ReferenceWeights = Map<string, Float64Array>;

/** What a reference forward returns: [b, t, hidden] and [b, t, vocab], row-major. */
export interface ReferenceOutput {
  hidden: Float64Array;
  logits: Float64Array;
}

/** Read every parameter of `shapes` from `source` as float64 (checkpoint keys as in `shapes`). */
export async function referenceWeights(source: TensorSource, shapes: ModelShapes): Promise<ReferenceWeights> {
  const w: ReferenceWeights = new Map();
  for (const p of shapes.params) if (!p.tiedTo) w.set(p.key, Float64Array.from(await source.readF32(p.key)));
  for (const p of shapes.params) if (p.tiedTo) w.set(p.key, w.get(p.tiedTo)!);
  return w;
}

/** GPT-2 with the LM head: ids [b, t] (row-major), optional attention mask [b, t]. */
export function gpt2Reference(
  c: Gpt2Config,
  w: ReferenceWeights,
  ids: Int32Array,
  b: number,
  t: number,
  mask: Int32Array | null = null,
): ReferenceOutput {
  const h = c.hiddenSize, p = "transformer.", get = getter(w);
  const wte = get(`${p}wte.weight`), wpe = get(`${p}wpe.weight`);
  let x = new Float64Array(b * t * h);
  for (let r = 0; r < b * t; r++) {
    for (let j = 0; j < h; j++) x[r * h + j] = wte[ids[r] * h + j] + wpe[(r % t) * h + j];
  }
  const ln = (y: Float64Array, key: string) =>
    normForward(
      { shape: [b * t, h], data: y },
      get(`${key}.weight`),
      get(`${key}.bias`),
      c.layerNormEps,
      false,
    ).data;
  const conv = (y: Float64Array, key: string, inF: number, outF: number) =>
    dense(y, get(`${key}.weight`), get(`${key}.bias`), inF, outF, "in_out");
  const baseScale = c.scaleAttnWeights ? 1 / Math.sqrt(c.headDim) : 1;
  for (let i = 0; i < c.numLayers; i++) {
    const l = `${p}h.${i}`;
    const scale = c.scaleAttnByInverseLayerIdx ? baseScale / (i + 1) : baseScale;
    const qkv = conv(ln(x, `${l}.ln_1`), `${l}.attn.c_attn`, h, 3 * h);
    const part = (k: number) => pick(qkv, b * t, 3 * h, k * h, h);
    const heads = { b, t, h: c.numHeads, hkv: c.numHeads, d: c.headDim, mask, scale };
    const a = selfAttention(part(0), part(1), part(2), heads);
    x = addInto(x, conv(a, `${l}.attn.c_proj`, h, h));
    const act = ACTIVATIONS[c.activation].f;
    const m = conv(ln(x, `${l}.ln_2`), `${l}.mlp.c_fc`, h, c.intermediateSize).map(act);
    x = addInto(x, conv(m, `${l}.mlp.c_proj`, c.intermediateSize, h));
  }
  const hidden = ln(x, `${p}ln_f`);
  return { hidden, logits: dense(hidden, get("lm_head.weight"), null, h, c.vocabSize, "out_in") };
}

/** LLaMA (and the variants built as it) with the LM head: ids [b, t] (row-major), optional attention mask [b, t]. */
export function llamaReference(
  c: LlamaConfig,
  w: ReferenceWeights,
  ids: Int32Array,
  b: number,
  t: number,
  mask: Int32Array | null = null,
): ReferenceOutput {
  const h = c.hiddenSize, d = c.headDim, p = "model.", get = getter(w);
  const emb = get(`${p}embed_tokens.weight`);
  let x = new Float64Array(b * t * h);
  for (let r = 0; r < b * t; r++) x.set(emb.subarray(ids[r] * h, (ids[r] + 1) * h), r * h);
  const rms = (y: Float64Array, key: string) =>
    normForward({ shape: [b * t, h], data: y }, get(`${key}.weight`), null, c.rmsNormEps, true).data;
  const lin = (y: Float64Array, key: string, inF: number, outF: number) =>
    dense(y, get(`${key}.weight`), w.get(`${key}.bias`) ?? null, inF, outF, "out_in");
  // RoPE on the first rotaryDim dimensions of each head, cos and sin scaled by longrope's factor
  const rd = c.rotaryDim, half = rd / 2, cos = new Float64Array(t * half), sin = new Float64Array(t * half);
  const inv = ropeInverseFrequencies64(c.rope, rd, t), scale = ropeScale(c.rope);
  for (let pos = 0; pos < t; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * inv[i];
      cos[pos * half + i] = Math.cos(angle) * scale;
      sin[pos * half + i] = Math.sin(angle) * scale;
    }
  }
  const rotate = (y: Float64Array, heads: number) => ropeForward(y, [b, t, heads, d], cos, sin, rd, "bthd");
  // Phi-3: q, k and v from one projection (qkv_proj) and gate and up from another (gate_up_proj)
  const qDim = c.numHeads * d, kvDim = c.numKvHeads * d, inner = c.intermediateSize;
  const columns = (y: Float64Array, width: number, from: number, to: number) =>
    Float64Array.from({ length: (y.length / width) * (to - from) }, (_, i) => {
      const n = to - from;
      return y[Math.floor(i / n) * width + from + (i % n)];
    });
  const attnIn = (a: Float64Array, l: string, part: "q" | "k" | "v") => {
    if (!c.fusedProjections) {
      return lin(a, `${l}.self_attn.${part}_proj`, h, part === "q" ? qDim : kvDim);
    }
    const qkv = lin(a, `${l}.self_attn.qkv_proj`, h, qDim + 2 * kvDim), width = qDim + 2 * kvDim;
    const from = part === "q" ? 0 : part === "k" ? qDim : qDim + kvDim;
    return columns(qkv, width, from, from + (part === "q" ? qDim : kvDim));
  };
  const mlpIn = (m: Float64Array, l: string): [Float64Array, Float64Array] => {
    if (!c.fusedProjections) {
      return [lin(m, `${l}.mlp.gate_proj`, h, inner), lin(m, `${l}.mlp.up_proj`, h, inner)];
    }
    const gateUp = lin(m, `${l}.mlp.gate_up_proj`, h, 2 * inner);
    return [columns(gateUp, 2 * inner, 0, inner), columns(gateUp, 2 * inner, inner, 2 * inner)];
  };
  // Qwen3: each query and key head through its RMSNorm (q_norm, k_norm), then RoPE
  const headNorm = (y: Float64Array, heads: number, key: string) =>
    c.qkNorm
      ? normForward({ shape: [b * t * heads, d], data: y }, get(key), null, c.rmsNormEps, true).data
      : y;
  const act = ACTIVATIONS[c.activation].f;
  for (let i = 0; i < c.numLayers; i++) {
    const l = `${p}layers.${i}`, a = rms(x, `${l}.input_layernorm`);
    const q = rotate(headNorm(attnIn(a, l, "q"), c.numHeads, `${l}.self_attn.q_norm.weight`), c.numHeads);
    const k = rotate(headNorm(attnIn(a, l, "k"), c.numKvHeads, `${l}.self_attn.k_norm.weight`), c.numKvHeads);
    const v = attnIn(a, l, "v");
    const window = c.slidingWindow !== null && c.slidingLayers.includes(i) ? c.slidingWindow : undefined;
    const heads = { b, t, h: c.numHeads, hkv: c.numKvHeads, d, mask, scale: 1 / Math.sqrt(d), window };
    x = addInto(x, lin(selfAttention(q, k, v, heads), `${l}.self_attn.o_proj`, c.numHeads * d, h));
    const m = rms(x, `${l}.post_attention_layernorm`);
    const [gate, up] = mlpIn(m, l);
    x = addInto(x, lin(gate.map((g, j) => act(g) * up[j]), `${l}.mlp.down_proj`, inner, h));
  }
  const hidden = rms(x, `${p}norm`);
  return { hidden, logits: dense(hidden, get("lm_head.weight"), null, h, c.vocabSize, "out_in") };
}

/** Mean next-token cross-entropy of each row of logits [b, t, v] against `labels` (−100 ignored). */
export function rowLosses(
  logits: Float64Array,
  labels: Int32Array,
  b: number,
  t: number,
  v: number,
): number[] {
  return Array.from({ length: b }, (_, r) => {
    let total = 0, count = 0;
    for (let i = 0; i < t; i++) {
      const y = labels[r * t + i];
      if (y === -100) continue;
      const row = logits.subarray((r * t + i) * v, (r * t + i + 1) * v);
      const mx = row.reduce((a, z) => Math.max(a, z), -Infinity);
      total += mx + Math.log(row.reduce((a, z) => a + Math.exp(z - mx), 0)) - row[y];
      count++;
    }
    return count > 0 ? total / count : 0;
  });
}

function getter(w: ReferenceWeights): (key: string) => Float64Array {
  return (key) => {
    const v = w.get(key);
    if (!v) throw new Error(`reference: no parameter "${key}"`);
    return v;
  };
}

/** y [rows, outF] = x [rows, inF] · W (+ bias), W stored (out, in) or (in, out). */
function dense(
  x: Float64Array,
  wt: Float64Array,
  bias: Float64Array | null,
  inF: number,
  outF: number,
  layout: "out_in" | "in_out",
): Float64Array {
  const rows = x.length / inF, y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let acc = bias ? bias[o] : 0;
      if (layout === "out_in") { for (let i = 0; i < inF; i++) acc += x[r * inF + i] * wt[o * inF + i]; }
      else for (let i = 0; i < inF; i++) acc += x[r * inF + i] * wt[i * outF + o];
      y[r * outF + o] = acc;
    }
  }
  return y;
}

/** Columns [from, from + n) of x [rows, width]. */
function pick(x: Float64Array, rows: number, width: number, from: number, n: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) y.set(x.subarray(r * width + from, r * width + from + n), r * n);
  return y;
}

function addInto<A extends Float64Array>(x: A, y: Float64Array): A {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
  return x;
}

/** Causal self-attention over q [b, t, h·d], k/v [b, t, hkv·d] → [b, t, h·d]. */
function selfAttention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  a: {
    b: number;
    t: number;
    h: number;
    hkv: number;
    d: number;
    mask: Int32Array | null;
    scale: number;
    window?: number;
  },
): Float64Array {
  const toHeads = (x: Float64Array, n: number) => transpose12(x, a.b, a.t, n, a.d);
  const dims = {
    b: a.b,
    h: a.h,
    hkv: a.hkv,
    t: a.t,
    s: a.t,
    d: a.d,
    dv: a.d,
    causal: true,
    window: a.window,
    mask: a.mask,
    scale: a.scale,
  };
  const out = attentionForward(dims, toHeads(q, a.h), toHeads(k, a.hkv), toHeads(v, a.hkv));
  return transpose12(out, a.b, a.h, a.t, a.d);
}

/** [n0, n1, n2, n3] → [n0, n2, n1, n3]. */
function transpose12(x: Float64Array, n0: number, n1: number, n2: number, n3: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < n0; i++) {
    for (let j = 0; j < n1; j++) {
      for (let k = 0; k < n2; k++) {
        const src = ((i * n1 + j) * n2 + k) * n3, dst = ((i * n2 + k) * n1 + j) * n3;
        y.set(x.subarray(src, src + n3), dst);
      }
    }
  }
  return y;
}
