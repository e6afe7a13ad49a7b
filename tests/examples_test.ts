import { assert } from "./assert.ts";

/** Run examples/`name` on the embedded model, writing to `out`; its standard output (it must succeed). */
async function runExample(name: string, out: string): Promise<string> {
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(`../examples/${name}`, import.meta.url).pathname, "models/default", out],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(run.success, new TextDecoder().decode(run.stderr));
  return new TextDecoder().decode(run.stdout);
}

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

Deno.test("examples/finetune.ts trains SSH from TypeScript, and its merged model needs no adapter", async () => {
  const out = await Deno.makeTempDir();
  try {
    const text = await runExample("finetune.ts", out);
    const m = text.match(/merged \(held-out accuracy ([\d.]+)\)\n.*held-out accuracy ([\d.]+) -> ([\d.]+)/);
    assert(m, text);
    const [merged, before, after] = m.slice(1).map(Number);
    assert(after >= before + 0.2, `SSH should learn the toy task: ${before} -> ${after}`);
    assert(merged === after, `the merged model's accuracy ${merged} should be the adapter model's ${after}`);
    const config = JSON.parse(await Deno.readTextFile(`${out}/merged/config.json`));
    assert(config.architectures[0] === "GPT2ForSequenceClassification", JSON.stringify(config.architectures));
    assert(config.id2label[1] === "food", JSON.stringify(config.id2label));
    assert((await Deno.stat(`${out}/adapter/adapter_model.safetensors`)).isFile);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("examples/instruct.ts instruction-tunes the embedded model: the completions learnt, the answers right", async () => {
  const out = await Deno.makeTempDir();
  try {
    const text = await runExample("instruct.ts", out);
    const m = text.match(/completion loss ([\d.]+) -> ([\d.]+); (\d)\/8 answers right/);
    assert(m, text);
    const [before, after, right] = m.slice(1).map(Number);
    assert(after < before - 2 && right >= 6, text);
    assert((await Deno.stat(`${out}/adapter/adapter_model.safetensors`)).isFile);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("examples/ner.ts trains a token classifier with SSH: entity F1 up, the new sentence's names tagged", async () => {
  const out = await Deno.makeTempDir();
  try {
    const text = await runExample("ner.ts", out);
    const m = text.match(/entity F1 ([\d.]+) -> ([\d.]+)/);
    assert(m, text);
    const [before, after] = m.slice(1).map(Number);
    assert(after >= 0.9 && after >= before + 0.4, text);
    assert(
      text.includes("Ines/B-PER moved/O to/O Oslo/B-LOC") && text.includes("PER: Ines; LOC: Oslo"),
      text,
    );
    const config = JSON.parse(await Deno.readTextFile(`${out}/adapter/adapter_config.json`));
    assert(config.task_type === "TOKEN_CLS", JSON.stringify(config));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("the README's TypeScript examples are the example files", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1].trim());
  for (const name of ["finetune.ts", "instruct.ts", "spectral_layer.ts"]) {
    const file = await Deno.readTextFile(new URL(`../examples/${name}`, import.meta.url));
    const body = file.slice(file.indexOf("import")).replaceAll('"../mod.ts"', '"./mod.ts"').trim();
    assert(blocks.includes(body), `README.md should show examples/${name} from its imports on, as it is`);
  }
});

Deno.test("the module exports every error class the library names in @throws (the CLI's aside)", async () => {
  const hartley: Record<string, unknown> = await import("../mod.ts");
  const named = new Set<string>();
  for await (const file of walkTs(new URL("../lib/", import.meta.url).pathname)) {
    for (const m of (await Deno.readTextFile(file)).matchAll(/@throws \{?([A-Z]\w*Error)\b/g)) {
      named.add(m[1]);
    }
  }
  assert(named.size >= 3, `@throws tags found: ${[...named]}`);
  const builtIn = (name: string) => name in globalThis;
  for (const name of [...named, "TokenizerError", "SafetensorsError"].filter((n) => !builtIn(n))) {
    assert(typeof hartley[name] === "function", `mod.ts exports ${name}`);
  }
});

async function* walkTs(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory && e.name !== "cli") yield* walkTs(`${dir}${e.name}/`);
    else if (e.name.endsWith(".ts")) yield `${dir}${e.name}`;
  }
}
