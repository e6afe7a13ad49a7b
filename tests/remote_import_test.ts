import { assert } from "./assert.ts";

// The kernels are TypeScript string modules, so the library works when imported from a URL
// (as from JSR), not only from a checkout: serve the tree over HTTP and run an FHT from there.
Deno.test("the spectral kernels load and run when imported over HTTP", async () => {
  const root = new URL("../", import.meta.url);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    try {
      const body = await Deno.readFile(new URL("." + path, root));
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const script = `
    import { getGpu, readF32, upload } from "${base}/lib/gpu/mod.ts";
    import { encodeFht } from "${base}/lib/spectral/fht.ts";
    const gpu = await getGpu();
    const x = upload(gpu, new Float32Array([1, 0, 0, 0, 0, 0, 0]));
    const y = gpu.pool.acquire(28);
    encodeFht(gpu, x, y, 1, 7);
    console.log(JSON.stringify([...await readF32(gpu, y, 7)]));
  `;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", "--no-lock", script], // random ports must not land in deno.lock
      stdout: "piped",
      stderr: "piped",
      env: { DENO_DIR: await Deno.makeTempDir() },
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert(out.success, new TextDecoder().decode(out.stderr));
    assert(text === JSON.stringify([1, 1, 1, 1, 1, 1, 1]), text); // the DHT of a unit impulse
  } finally {
    await server.shutdown();
  }
});
