import { assert } from "./assert.ts";

Deno.test("examples/spectral_layer.ts runs and prints a gradient", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../examples/spectral_layer.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert(out.success, new TextDecoder().decode(out.stderr));
  assert(/∂L\/∂c\[0\.\.3\] = -?\d/.test(text), text);
});
