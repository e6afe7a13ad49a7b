import { getGpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { leaf, randArr, Rng } from "./tensor_helpers.ts";

Deno.test("a 1000-block residual chain: value and gradient match float64, no recursion limit", async () => {
  const gpu = await getGpu();
  const x0 = [0.3, -1.2, 2.0];
  const x = T.Tensor.from(gpu, x0, [3], { requiresGrad: true });
  const depth = 1000;
  const y = T.tidy(() => {
    let h = x;
    for (let i = 0; i < depth; i++) h = T.add(h, T.scale(T.tanh(h), 0.01));
    return T.sum(h);
  });
  y.backward();
  const h = x0.slice(), d = [1, 1, 1];
  for (let i = 0; i < depth; i++) {
    for (let j = 0; j < 3; j++) {
      const t = Math.tanh(h[j]);
      d[j] *= 1 + 0.01 * (1 - t * t);
      h[j] += 0.01 * t;
    }
  }
  assertClose([await y.item()], [h[0] + h[1] + h[2]], 1e-5, "value");
  assertClose(await x.grad!.toArray(), d, 1e-5, "gradient");
});

Deno.test("tidy frees what it created except results; nested results move outward; throws clean up", async () => {
  const gpu = await getGpu();
  const a = T.Tensor.from(gpu, [1, 2, 3], [3]);
  let inner: T.Tensor | null = null, temp: T.Tensor | null = null;
  const out = T.tidy(() => {
    const b = T.scale(a, 2);
    inner = T.tidy(() => {
      temp = T.add(b, b);
      return { result: T.mul(temp, b) };
    }).result;
    assert(temp!.disposed && !inner.disposed, "inner scope freed its temporary, kept its result");
    return [inner, T.keep(T.scale(b, 3))];
  });
  assert(!out[0].disposed && !out[1].disposed, "returned and kept tensors survive");
  assertEquals([...await out[0].toArray()], [8, 32, 72]);
  assertThrows(() => T.add(temp!, a), "used after dispose");
  let leaked: T.Tensor | null = null;
  assertThrows(() =>
    T.tidy(() => {
      leaked = T.scale(a, 1);
      throw new Error("boom");
    }), "boom");
  assert(leaked!.disposed, "a throw disposes the scope's tensors");
  assertThrows(() => T.tidy(() => Promise.resolve(1)), "synchronous");
});

Deno.test("saved activations outlive tidy until backward, then return to the pool", async () => {
  const gpu = await getGpu();
  const w = T.Tensor.from(gpu, Float32Array.from({ length: 64 * 64 }, (_, i) => Math.sin(i)), [64, 64], {
    requiresGrad: true,
  });
  const x = T.Tensor.from(gpu, Float32Array.from({ length: 8 * 64 }, (_, i) => Math.cos(i)), [8, 64]);
  const step = () => {
    const loss = T.tidy(() => T.mean(T.gelu(T.matmul(T.tanh(T.matmul(x, w)), w))));
    const held = gpu.pool.stats().inUse;
    loss.backward();
    loss.dispose();
    return held;
  };
  step();
  const base = gpu.pool.stats().inUse;
  const held = step();
  assert(held > base, "the graph holds its activations between forward and backward");
  assertEquals(gpu.pool.stats().inUse, base, "after backward only parameters and gradients remain");
  const unused = T.tidy(() => T.sum(T.tanh(T.matmul(x, w))));
  assert(gpu.pool.stats().inUse > base, "a forward without backward holds its graph");
  unused.dispose();
  assertEquals(gpu.pool.stats().inUse, base, "disposing the result releases the graph");
});

Deno.test("noGrad records nothing; gradients accumulate; shared inputs sum; retainGraph", async () => {
  const gpu = await getGpu();
  const x = T.Tensor.from(gpu, [1, -2], [2], { requiresGrad: true });
  const y = T.noGrad(() => {
    assert(!T.isGradEnabled());
    return T.mul(x, x);
  });
  assert(!y.requiresGrad && y.isLeaf, "no node under noGrad");
  assert(T.isGradEnabled());
  const z = T.sum(T.mul(x, x));
  z.backward(undefined, { retainGraph: true });
  assertEquals([...await x.grad!.toArray()], [2, -4], "x·x gives 2x");
  z.backward();
  assertEquals([...await x.grad!.toArray()], [4, -8], "a second backward accumulates");
  assertThrows(() => z.backward(), "already released");
  assertThrows(() => T.sum(y).backward(), "does not require a gradient");
  assertThrows(() => T.mul(x, x).backward(), "not a scalar");
  const frozen = T.Tensor.from(gpu, [3, 4], [2]);
  T.sum(T.mul(x, frozen)).backward();
  assertEquals(frozen.grad, null, "no gradient for tensors that do not require one");
  // four elements: the vec4 forms of mul and of the gradient sums (axpy)
  const x4 = T.Tensor.from(gpu, [1, -2, 3, 0.5], [4], { requiresGrad: true });
  for (let i = 0; i < 2; i++) T.sum(T.mul(x4, x4)).backward();
  assertEquals([...await x4.grad!.toArray()], [4, -8, 12, 2], "vec4 accumulation");
});

Deno.test("a matmul's input gradient adds into what its input gathered already (no separate sum)", async () => {
  const gpu = await getGpu();
  const rng = new Rng(77);
  const [rows, n, m] = [5, 6, 3];
  const x = randArr(rng, [rows, n]);
  const ws = [randArr(rng, [m, n]), randArr(rng, [m, n]), randArr(rng, [m, n])];
  const r = randArr(rng, [rows, m]);
  const tx = leaf(gpu, x);
  const tws = ws.map((w) => leaf(gpu, w, false));
  const names: string[] = [];
  const stream = gpu.stream;
  const dispatch = stream.dispatch.bind(stream);
  stream.dispatch = (kernel, ...rest) => {
    names.push(kernel.name);
    dispatch(kernel, ...rest);
  };
  try {
    // h feeds three products: the first gradient to arrive is a fresh tensor, the next two add into it
    const h = T.tanh(tx);
    const loss = T.sum(
      T.mul(T.add(T.add(T.linear(h, tws[0]), T.linear(h, tws[1])), T.linear(h, tws[2])), leaf(gpu, r, false)),
    );
    names.length = 0;
    loss.backward();
    assertEquals(names.filter((k) => k.startsWith("elementwise.axpy")).length, 0, `kernels: ${names}`);
  } finally {
    stream.dispatch = dispatch;
  }
  // dL/dx = (1 − tanh²(x)) ⊙ (r·(W1 + W2 + W3))
  const want = new Float64Array(rows * n);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let o = 0; o < m; o++) s += r.data[i * m + o] * ws.reduce((a, w) => a + w.data[o * n + j], 0);
      const t = Math.tanh(x.data[i * n + j]);
      want[i * n + j] = (1 - t * t) * s;
    }
  }
  assertClose(await tx.grad!.toArray(), want, 1e-5, "x gradient");
});

Deno.test("a gradient rule that throws: the error comes through and the step's graph and gradients go back to the pool", async () => {
  const gpu = await getGpu();
  const w = T.Tensor.from(gpu, Float32Array.from({ length: 16 * 16 }, (_, i) => Math.sin(i)), [16, 16], {
    requiresGrad: true,
  });
  const x = T.Tensor.from(gpu, Float32Array.from({ length: 4 * 16 }, (_, i) => Math.cos(i)), [4, 16]);
  const base = gpu.pool.stats().inUse;
  for (const retainGraph of [false, true]) {
    const loss = T.tidy(() => {
      const h = T.tanh(T.matmul(x, w));
      const out = T.noGrad(() => T.scale(h, 1));
      const boom = T.record("boom", out, [h], [h], () => {
        throw new Error("boom in backward");
      });
      // h's other consumer gives it a gradient before the rule that throws runs
      return T.sum(T.add(boom, T.gelu(h)));
    });
    assertThrows(() => loss.backward(undefined, { retainGraph }), "boom in backward");
    loss.dispose();
    assertEquals(w.grad, null, "no gradient reached w");
    assertEquals(gpu.pool.stats().inUse, base, `retainGraph ${retainGraph}: nothing of the step is held`);
  }
});
