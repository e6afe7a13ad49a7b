/**
 * chat checks what it can before the model loads: a model directory without a chat template is
 * refused with a model whose weights cannot load (loading them would fail with another error).
 */
import { join } from "node:path";
import { assert } from "./assert.ts";
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
