/**
 * chat checks what it can before the model loads: a model directory without a chat template, or
 * with a malformed generation_config.json, is refused with a model whose tokenizer and weights
 * cannot load (loading them would fail with another error). What it loads, it releases.
 */
import { join } from "node:path";
import { getGpu } from "../lib/gpu/mod.ts";
import { chatCommand } from "../lib/cli/chat.ts";
import { assert, assertEquals } from "./assert.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";
import { runCli } from "./train_helpers.ts";

Deno.test("chat: a model without a chat template is refused before its weights load", async () => {
  const dir = await tempModelDir(fixtureModel("gpt2"));
  try {
    await Deno.writeTextFile(join(dir, "model.safetensors"), "not a checkpoint");
    const none = await runCli(["chat", "--model", dir]);
    assert(none.code === 2 && none.err.includes(`${dir} has no chat template`), none.err);
    const badKwargs = await runCli(["chat", "--model", dir, "--template-kwargs", "[]"]);
    assert(
      badKwargs.code === 2 && badKwargs.err.includes("--template-kwargs: expected a JSON object"),
      badKwargs.err,
    );
    // with a template, the weights are what fails
    await Deno.writeTextFile(join(dir, "chat_template.jinja"), "{{ messages[0].content }}");
    const loads = await runCli(["chat", "--model", dir]);
    assert(loads.code === 1 && loads.err.includes("model.safetensors: header length"), loads.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("chat: a malformed generation_config.json is refused before the tokenizer and weights load", async () => {
  const dir = await tempModelDir(fixtureModel("gpt2"));
  try {
    await Deno.writeTextFile(join(dir, "model.safetensors"), "not a checkpoint");
    await Deno.writeTextFile(join(dir, "tokenizer.json"), "not a tokenizer");
    await Deno.writeTextFile(join(dir, "chat_template.jinja"), "{{ messages[0].content }}");
    await Deno.writeTextFile(join(dir, "generation_config.json"), JSON.stringify({ top_k: -1 }));
    const r = await runCli(["chat", "--model", dir]);
    assert(r.code === 1 && r.err.includes(`generation_config.json: "top_k" must be an integer ≥ 0`), r.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("chat: the model and its adapter are released when the conversation ends", async () => {
  const dir = await tempModelDir(fixtureModel("gpt2"));
  try {
    await Deno.writeTextFile(join(dir, "chat_template.jinja"), "{{ messages[0].content }}");
    const gpu = await getGpu();
    const before = gpu.pool.stats().inUse;
    const io = {
      input: ReadableStream.from([new TextEncoder().encode("/exit\n")]),
      write: () => {},
      prompt: false,
    };
    const code = await chatCommand(["--model", dir, "--adapter", "tests/fixtures/adapters/gpt2-lora"], io);
    assertEquals(code, 0);
    assertEquals(gpu.pool.stats().inUse, before, "GPU bytes in use after the conversation");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
