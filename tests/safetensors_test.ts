import { assert, assertEquals, assertRejects } from "./assert.ts";
import { firstUnstorable, FLOAT_RANGE, fromFloat, toFloat32 } from "../lib/io/dtype.ts";
import { Prng } from "../lib/spectral/prng.ts";
import {
  bf16ToF32,
  bf16ToNumber,
  type Dtype,
  f16ToF32,
  f16ToNumber,
  f32ToBf16,
  f32ToF16,
  numberToBf16,
  numberToF16,
  type TypedArray,
} from "../lib/io/dtype.ts";
import {
  openCheckpoint,
  openSafetensors,
  SafetensorsError,
  ShardedCheckpoint,
} from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { withAtomicFile, writeAll, writeFileAtomic } from "../lib/io/atomic.ts";
import { withTempDir } from "./temp_dir.ts";
import { writeRawSafetensors } from "./raw_safetensors.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

// ---------------------------------------------------------------- f16 / bf16 conversions

Deno.test("f16: known values, rounding ties to even, subnormals, overflow, NaN", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite
    [65519, 0x7bff], // below the midpoint to Infinity
    [65520, 0x7c00], // the midpoint: ties to even = Infinity
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: ties to even = 0
    [3 * 2 ** -26, 0x0001], // above half
    [3 * 2 ** -25, 0x0002], // 1.5 ulps: ties to even = 2
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10: even
    [1 + 3 * 2 ** -11, 0x3c02], // tie: rounds up to even
    [-0, 0x8000],
  ];
  for (const [x, bits] of cases) assertEquals(numberToF16(x), bits, `numberToF16(${x})`);
  assert(Number.isNaN(f16ToNumber(numberToF16(NaN))), "NaN stays NaN");
  assertEquals(f16ToNumber(0x0001), 2 ** -24);
  assertEquals(f16ToNumber(0x03ff), 1023 * 2 ** -24);
  assertEquals(f16ToNumber(0xfbff), -65504);
  assert(Object.is(f16ToNumber(0x8000), -0), "-0");
});

Deno.test("f16: every pattern round-trips through f32", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = f32ToF16(f16ToF32(all));
  for (let h = 0; h < 65536; h++) {
    const nan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (nan) assert((back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff) !== 0, `NaN ${h} stays NaN`);
    else if (back[h] !== h) {
      throw new Error(`f16 pattern ${h.toString(16)} came back as ${back[h].toString(16)}`);
    }
  }
});

Deno.test("f16: random f32 values round to the nearest f16 (ties to even)", () => {
  // Reference: all finite non-negative f16 values in order; pick the nearest by search.
  const values = f16ToF32(new Uint16Array(0x7c00).map((_, i) => i));
  const nearest = (x: number): number => {
    const a = Math.abs(x);
    if (a >= 65520) return 0x7c00;
    let lo = 0, hi = values.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (values[mid] <= a) lo = mid;
      else hi = mid;
    }
    const dl = a - values[lo], dh = values[hi] - a;
    return dl < dh ? lo : dh < dl ? hi : (lo % 2 === 0 ? lo : hi);
  };
  const rng = new Prng(7);
  const xs = new Float32Array(20000);
  for (let i = 0; i < xs.length; i++) {
    xs[i] = (rng.uniform() - 0.5) * 2 ** (Math.floor(rng.uniform() * 46) - 27);
  }
  const got = f32ToF16(xs);
  for (let i = 0; i < xs.length; i++) {
    const want = nearest(xs[i]) | (xs[i] < 0 || Object.is(xs[i], -0) ? 0x8000 : 0);
    if (got[i] !== want) {
      throw new Error(`f32ToF16(${xs[i]}) = ${got[i].toString(16)}, want ${want.toString(16)}`);
    }
  }
});

Deno.test("bf16: known values, ties to even, every pattern round-trips", () => {
  assertEquals(numberToBf16(1), 0x3f80);
  assertEquals(numberToBf16(-2), 0xc000);
  assertEquals(numberToBf16(1 + 2 ** -8), 0x3f80, "tie: even");
  assertEquals(numberToBf16(1 + 3 * 2 ** -8), 0x3f82, "tie: up to even");
  assertEquals(numberToBf16(1 + 2 ** -8 + 2 ** -20), 0x3f81, "above the tie");
  assertEquals(numberToBf16(3.4e38), 0x7f80, "overflow to Infinity");
  assert(Number.isNaN(bf16ToNumber(numberToBf16(NaN))), "NaN stays NaN");
  assertEquals(bf16ToNumber(0x3f80), 1);
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = f32ToBf16(bf16ToF32(all));
  for (let h = 0; h < 65536; h++) {
    const nan = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
    if (nan) assert((back[h] & 0x7f80) === 0x7f80 && (back[h] & 0x7f) !== 0, `NaN ${h} stays NaN`);
    else if (back[h] !== h) {
      throw new Error(`bf16 pattern ${h.toString(16)} came back as ${back[h].toString(16)}`);
    }
  }
});

// ---------------------------------------------------------------- write / read round trips

function sample(dtype: Dtype, n: number, rng: Prng): TypedArray {
  const ints = (lo: number, span: number) => Array.from({ length: n }, () => lo + rng.below(span));
  switch (dtype) {
    case "F64":
      return Float64Array.from({ length: n }, () => rng.normal() * 1e3);
    case "F32":
      return Float32Array.from({ length: n }, () => rng.normal());
    case "F16":
      return f32ToF16(Float32Array.from({ length: n }, () => rng.normal()));
    case "BF16":
      return f32ToBf16(Float32Array.from({ length: n }, () => rng.normal()));
    case "I64":
      return BigInt64Array.from(ints(0, 2 ** 32), (x) => BigInt(x) * 3000000007n - 2n ** 62n);
    case "I32":
      return Int32Array.from(ints(-(2 ** 31), 2 ** 32));
    case "I16":
      return Int16Array.from(ints(-32768, 65536));
    case "I8":
      return Int8Array.from(ints(-128, 256));
    case "U8":
      return Uint8Array.from(ints(0, 256));
    case "BOOL":
      return Uint8Array.from(ints(0, 2));
  }
}

const ALL_DTYPES: Dtype[] = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"];
const SHAPES = [[], [0], [1], [7], [5, 3], [2, 3, 7]];

Deno.test("write then read: every dtype, awkward shapes, metadata", async () => {
  await withTempDir("hartley_st_", async (dir) => {
    const rng = new Prng(1);
    const tensors: Record<string, TensorData> = {};
    for (const dtype of ALL_DTYPES) {
      for (const shape of SHAPES) {
        const n = shape.reduce((a, b) => a * b, 1);
        tensors[`${dtype.toLowerCase()}.${shape.join("x") || "scalar"}`] = {
          dtype,
          shape,
          data: sample(dtype, n, rng),
        };
      }
    }
    const path = `${dir}/all.safetensors`;
    await writeSafetensors(path, tensors, { format: "pt", note: "ünïcode ✓" });
    const st = await openSafetensors(path);
    assertEquals(st.metadata, { format: "pt", note: "ünïcode ✓" });
    assertEquals([...st.names].sort(), Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const info = st.info(name);
      assertEquals(info.dtype, t.dtype, name);
      assertEquals(info.shape, t.shape, name);
      const back = await st.read(name);
      assertEquals(back.constructor.name, t.data.constructor.name, name);
      assertEquals(
        Array.from(back as ArrayLike<unknown>, String),
        Array.from(t.data as ArrayLike<unknown>, String),
        name,
      );
    }
    // Header: 8-byte aligned, data starts right after it.
    const bytes = await Deno.readFile(path);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assertEquals(n % 8, 0, "header length is a multiple of 8");
    assertEquals(st.dataStart, 8 + n);
  });
});

Deno.test("readF32 converts every dtype", async () => {
  await withTempDir("hartley_st_", async (dir) => {
    const path = `${dir}/conv.safetensors`;
    const vals = [0, 1, -2, 0.5, 3];
    await writeSafetensors(path, {
      f64: { dtype: "F64", shape: [5], data: Float64Array.from(vals) },
      f16: { dtype: "F16", shape: [5], data: Float32Array.from(vals) }, // converted on write
      bf16: { dtype: "BF16", shape: [5], data: Float64Array.from(vals) },
      i64: { dtype: "I64", shape: [5], data: BigInt64Array.from(vals.map((v) => BigInt(Math.trunc(v)))) },
      i32: { dtype: "I32", shape: [5], data: Int32Array.from(vals) },
      i16: { dtype: "I16", shape: [5], data: Int16Array.from(vals) },
      i8: { dtype: "I8", shape: [5], data: Int8Array.from(vals) },
      u8: { dtype: "U8", shape: [5], data: Uint8Array.from([0, 1, 2, 0, 3]) },
      b: { dtype: "BOOL", shape: [5], data: Uint8Array.from([0, 1, 1, 0, 1]) },
    });
    const st = await openSafetensors(path);
    for (const name of ["f64", "f16", "bf16"]) assertEquals(Array.from(await st.readF32(name)), vals, name);
    for (const name of ["i64", "i32", "i16", "i8"]) {
      assertEquals(Array.from(await st.readF32(name)), [0, 1, -2, 0, 3], name);
    }
    assertEquals(Array.from(await st.readF32("u8")), [0, 1, 2, 0, 3]);
    assertEquals(Array.from(await st.readF32("b")), [0, 1, 1, 0, 1]);
    assert((await st.readF32("f16")) instanceof Float32Array);
  });
});

Deno.test("files written by the Python library are re-written byte for byte", async () => {
  await withTempDir("hartley_st_", async (dir) => {
    for (
      const rel of [
        "dht_reference.safetensors",
        "models/gpt2/reference.safetensors",
        "models/bert/model.safetensors",
      ]
    ) {
      const src = `${FIXTURES}${rel}`;
      const st = await openSafetensors(src);
      const tensors: Record<string, TensorData> = {};
      for (const name of st.names) {
        const { dtype, shape } = st.info(name);
        tensors[name] = { dtype, shape, data: await st.read(name) };
      }
      const out = `${dir}/copy.safetensors`;
      await writeSafetensors(out, tensors, Object.keys(st.metadata).length ? st.metadata : undefined);
      const a = await Deno.readFile(src), b = await Deno.readFile(out);
      assertEquals(b.length, a.length, rel);
      assert(a.every((x, i) => x === b[i]), `${rel}: bytes differ`);
    }
  });
});

Deno.test("header order as the reference library writes it, integer-like names too", async () => {
  await withTempDir("hartley_st_", async (dir) => {
    const one = (v: number): TensorData => ({ dtype: "F32", shape: [1], data: new Float32Array([v]) });
    const path = `${dir}/n.safetensors`;
    await writeSafetensors(path, { b: one(3), "2": one(2), "10": one(1) }, { a: "y", "9": "x" });
    const bytes = await Deno.readFile(path);
    const length = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + length)).trimEnd();
    assertEquals(
      header,
      '{"__metadata__":{"9":"x","a":"y"},"10":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
        '"2":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
    );
    assertEquals(Array.from(await (await openSafetensors(path)).readF32("2")), [2]);
  });
});

Deno.test("fixture checkpoint: names, metadata, values", async () => {
  const st = await openSafetensors(`${FIXTURES}dht_reference.safetensors`);
  assertEquals(st.names.length, 40);
  assert(st.metadata.doc.startsWith("x_MxN inputs"), "metadata doc");
  assertEquals(st.info("x_5x3"), { dtype: "F64", shape: [5, 3], byteLength: 120 });
  // dht_1x1 of a 1x1 input is the input itself.
  assertEquals(Array.from(await st.readF32("dht_1x1")), Array.from(await st.readF32("x_1x1")));
});

// ---------------------------------------------------------------- checkpoints

Deno.test("openCheckpoint: single file in a folder, a file path, an adapter name", async () => {
  const ck = await openCheckpoint(`${FIXTURES}models/llama`);
  assert(ck.path.endsWith("models/llama/model.safetensors"), ck.path);
  assertEquals(ck.info("model.embed_tokens.weight").shape, [512, 64]);
  const direct = await openCheckpoint(`${FIXTURES}models/llama/model.safetensors`);
  assertEquals(direct.names, ck.names);
  await withTempDir("hartley_st_", async (dir) => {
    await writeSafetensors(`${dir}/adapter_model.safetensors`, {
      "a.ssh_spectrum": { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
    });
    const ad = await openCheckpoint(dir, "adapter_model");
    assertEquals(Array.from(await ad.readF32("a.ssh_spectrum")), [1, 2]);
    const e = await assertRejects(() => openCheckpoint(dir), SafetensorsError, dir);
    assert(e.message.includes("model.safetensors"), e.message);
  });
});

Deno.test("sharded checkpoint: index.json with weight_map across shards", async () => {
  await withTempDir("hartley_st_", async (dir) => {
    await writeSafetensors(`${dir}/model-00001-of-00002.safetensors`, {
      "a.weight": { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      "b.bias": { dtype: "BF16", shape: [2], data: new Float32Array([0.5, -1]) },
    }, { format: "pt" });
    await writeSafetensors(`${dir}/model-00002-of-00002.safetensors`, {
      "c.weight": { dtype: "F16", shape: [3], data: new Float32Array([1, 2, 3]) },
    }, { format: "pt" });
    const weightMap = {
      "a.weight": "model-00001-of-00002.safetensors",
      "b.bias": "model-00001-of-00002.safetensors",
      "c.weight": "model-00002-of-00002.safetensors",
    };
    const index = `${dir}/model.safetensors.index.json`;
    await Deno.writeTextFile(index, JSON.stringify({ metadata: { total_size: 26 }, weight_map: weightMap }));
    const ck = await openCheckpoint(dir);
    assert(ck instanceof ShardedCheckpoint);
    assertEquals([...ck.names].sort(), ["a.weight", "b.bias", "c.weight"]);
    assertEquals(ck.metadata, { total_size: "26" });
    assertEquals(Array.from(await ck.readF32("b.bias")), [0.5, -1]);
    assertEquals(Array.from(await ck.readF32("c.weight")), [1, 2, 3]);
    assertEquals(ck.info("a.weight").shape, [2, 2]);
    assert(ck.fileOf("c.weight").endsWith("model-00002-of-00002.safetensors"));
    await assertRejects(() => ck.read("zzz"), SafetensorsError, `${index}: no tensor "zzz"`);

    // A tensor mapped to a shard that lacks it.
    await Deno.writeTextFile(
      index,
      JSON.stringify({ weight_map: { ...weightMap, "d.weight": weightMap["a.weight"] } }),
    );
    let e = await assertRejects(() => openCheckpoint(dir), SafetensorsError, index);
    assert(e.message.includes(`"d.weight"`) && e.message.includes("model-00001-of-00002"), e.message);
    // A missing shard.
    await Deno.writeTextFile(
      index,
      JSON.stringify({ weight_map: { "x": "model-00003-of-00003.safetensors" } }),
    );
    e = await assertRejects(() => openCheckpoint(dir), SafetensorsError, index);
    assert(
      e.message.includes("model-00003-of-00003.safetensors") && e.message.includes("not found"),
      e.message,
    );
    // Invalid JSON, and no weight_map.
    await Deno.writeTextFile(index, "{ not json");
    await assertRejects(() => openCheckpoint(dir), SafetensorsError, `${index}: invalid JSON`);
    await Deno.writeTextFile(index, "{}");
    await assertRejects(() => openCheckpoint(dir), SafetensorsError, `${index}: no "weight_map"`);
    // A shard path leaving the folder.
    await Deno.writeTextFile(index, JSON.stringify({ weight_map: { "x": "../elsewhere.safetensors" } }));
    await assertRejects(
      () => openCheckpoint(dir),
      SafetensorsError,
      `"x" maps to "../elsewhere.safetensors"`,
    );
    // model.safetensors beside an index (left over, its shards gone): the single file, as transformers
    await writeSafetensors(`${dir}/model.safetensors`, {
      "a.weight": { dtype: "F32", shape: [1], data: new Float32Array([7]) },
    });
    const single = await openCheckpoint(dir);
    assert(!(single instanceof ShardedCheckpoint));
    assertEquals(Array.from(await single.readF32("a.weight")), [7]);
  });
});

// ---------------------------------------------------------------- bad input

Deno.test("bad files: each error names the file and the tensor", async () => {
  await withTempDir("hartley_st_", async (dir) => {
    const p = `${dir}/bad.safetensors`;
    const ok = { "w": { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] } };

    await Deno.writeFile(p, new Uint8Array(5));
    await assertRejects(() => openSafetensors(p), SafetensorsError, `${p}: 5 bytes is too short`);

    await writeRawSafetensors(p, ok, 24, 100000);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `${p}: header length 100000 runs past the end`,
    );

    await writeRawSafetensors(p, `{"w": {"dtype": "F32", `, 0);
    await assertRejects(() => openSafetensors(p), SafetensorsError, `${p}: header is not valid JSON`);

    await writeRawSafetensors(p, `[1, 2]`, 0);
    await assertRejects(() => openSafetensors(p), SafetensorsError, `${p}: header is not a JSON object`);

    await writeRawSafetensors(p, { "w": { dtype: "Q7", shape: [2], data_offsets: [0, 8] } }, 8);
    await assertRejects(() => openSafetensors(p), SafetensorsError, `${p}: tensor "w": unknown dtype "Q7"`);

    await writeRawSafetensors(p, { "w8": { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } }, 2);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `${p}: tensor "w8": unsupported dtype "F8_E4M3"`,
    );

    await writeRawSafetensors(p, { "w": { dtype: "F32", shape: [2, 3], data_offsets: [0, 20] } }, 24);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `${p}: tensor "w": shape [2,3] of F32 needs 24 bytes but data_offsets [0, 20] span 20`,
    );

    await writeRawSafetensors(p, { "w": { dtype: "F32", shape: [2, -3], data_offsets: [0, 24] } }, 24);
    await assertRejects(() => openSafetensors(p), SafetensorsError, `${p}: tensor "w": shape [2,-3]`);

    await writeRawSafetensors(p, { "w": { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, 8);
    await assertRejects(() => openSafetensors(p), SafetensorsError, `${p}: tensor "w": data_offsets [8,0]`);

    await writeRawSafetensors(p, {
      "a": { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      "b": { dtype: "F32", shape: [2], data_offsets: [12, 20] },
    }, 20);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `${p}: tensors "a" [0, 16] and "b" [12, 20] overlap`,
    );

    await writeRawSafetensors(p, { "big": { dtype: "F32", shape: [4], data_offsets: [24, 40] }, ...ok }, 24);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `${p}: tensor "big": data_offsets [24, 40] run past the end of the data (24 bytes)`,
    );

    await writeRawSafetensors(p, { "__metadata__": { "n": 3 }, ...ok }, 24);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `${p}: "__metadata__" must map names to strings`,
    );
  });
});

Deno.test("a truncated file names the tensor cut off", async () => {
  await withTempDir("hartley_st_", async (dir) => {
    const p = `${dir}/cut.safetensors`;
    await writeSafetensors(p, {
      "first": { dtype: "F32", shape: [4], data: new Float32Array(4) },
      "second": { dtype: "F32", shape: [4], data: new Float32Array(4) },
    });
    const bytes = await Deno.readFile(p);
    await Deno.writeFile(p, bytes.subarray(0, bytes.length - 3));
    const e = await assertRejects(() => openSafetensors(p), SafetensorsError, p);
    assert(e.message.includes(`"second"`) && e.message.includes("truncated"), e.message);
    await Deno.writeFile(p, bytes.subarray(0, 20));
    await assertRejects(() => openSafetensors(p), SafetensorsError, `${p}: header length`);
  });
});

Deno.test("reading an absent tensor names the file and the tensor", async () => {
  const p = `${FIXTURES}models/vit/model.safetensors`;
  const st = await openSafetensors(p);
  const e = await assertRejects(() => st.read("vit.nope"), SafetensorsError, `${p}: no tensor "vit.nope"`);
  assert(e.message.includes("tensors:"), e.message);
});

Deno.test("bad tensors to write: named errors, target untouched, no temp file left", async () => {
  await withTempDir("hartley_st_", async (dir) => {
    const p = `${dir}/out.safetensors`;
    await writeFileAtomic(p, "previous content");
    await assertRejects(
      () => writeSafetensors(p, { "w": { dtype: "F32", shape: [2, 3], data: new Float32Array(5) } }),
      SafetensorsError,
      `${p}: tensor "w": shape [2,3] of F32 needs 24 bytes, the data has 20`,
    );
    await assertRejects(
      () => writeSafetensors(p, { "w": { dtype: "X9" as Dtype, shape: [1], data: new Float32Array(1) } }),
      SafetensorsError,
      `${p}: tensor "w": unknown dtype "X9"`,
    );
    await assertRejects(
      () => writeSafetensors(p, { "w": { dtype: "I32", shape: [1.5], data: new Int32Array(1) } }),
      SafetensorsError,
      `${p}: tensor "w": shape [1.5]`,
    );
    // A write that fails half-way (metadata value not a string) leaves the old file.
    await assertRejects(
      () =>
        writeSafetensors(p, { "w": { dtype: "F32", shape: [1], data: new Float32Array(1) } }, {
          k: 3 as unknown as string,
        }),
      SafetensorsError,
      `metadata "k"`,
    );
    // A failure inside the atomic write itself.
    await assertRejects(
      () =>
        withAtomicFile(p, async (f) => {
          await writeAll(f, new Uint8Array(100));
          throw new Error("disk full");
        }),
      Error,
      "disk full",
    );
    assertEquals(await Deno.readTextFile(p), "previous content");
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assertEquals(left, ["out.safetensors"]);
  });
});

Deno.test("FLOAT_RANGE: firstUnstorable's thresholds are where fromFloat's writing turns ±Infinity", () => {
  const below = (x: number) => {
    // the float64 just below x (positive, finite)
    const v = new DataView(new ArrayBuffer(8));
    v.setFloat64(0, x);
    v.setBigUint64(0, v.getBigUint64(0) - 1n);
    return v.getFloat64(0);
  };
  for (const dtype of ["F32", "F16", "BF16"] as const) {
    const { max, overflow } = FLOAT_RANGE[dtype];
    const written = (x: number) => toFloat32(dtype, fromFloat(dtype, Float64Array.of(x, -x)));
    assertEquals(Array.from(written(overflow)), [Infinity, -Infinity], `${dtype} at its threshold`);
    assertEquals(Array.from(written(below(overflow))), [max, -max], `${dtype} just below`);
    assertEquals(firstUnstorable(Float64Array.of(1, below(overflow), -overflow), dtype), 2);
    assertEquals(firstUnstorable(Float64Array.of(NaN), dtype), 0);
  }
});
