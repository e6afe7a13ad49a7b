// Phi-3 through the CLI: SSH on its default target (qkv_proj, q, k and v in one layer) trains a
// causal LM, and the merged directory is a Phi3ForCausalLM whose evaluation is the adapter's.
import { assert, assertClose, assertEquals } from "./assert.ts";
import { phi3Dir } from "./model_helpers.ts";
import { evalAdapterAndMerged, runCli, withTempDir } from "./train_helpers.ts";

Deno.test("CLI: SSH on Phi-3's qkv_proj trains a causal LM; eval of adapter and merged model agree", async () => {
  const model = await phi3Dir({ partial_rotary_factor: 0.5, sliding_window: 6 });
  try {
    await withTempDir("phi3", async (dir) => {
      const text = Array.from(
        { length: 40 },
        (_, i) => `the ${["red", "blue", "green"][i % 3]} cat sat ${i % 7}`,
      );
      await Deno.writeTextFile(`${dir}/train.txt`, text.join("\n") + "\n");
      const train = await runCli([
        "train",
        "--model",
        model,
        "--data",
        `${dir}/train.txt`,
        "--seq-len",
        "12",
        "--batch-size",
        "4",
        "--steps",
        "6",
        "--n",
        "24",
        "--eval-fraction",
        "0.25",
        "--out",
        `${dir}/run`,
        "--quiet",
      ]);
      assertEquals(train.code, 0, train.err);
      const config = JSON.parse(await Deno.readTextFile(`${dir}/run/adapter/adapter_config.json`));
      assertEquals([config.task_type, config.target_modules], ["CAUSAL_LM", ["qkv_proj"]]);
      const { viaAdapter: a, viaMerged: b, config: merged } = await evalAdapterAndMerged(
        model,
        `${dir}/run/adapter`,
        `${dir}/train.txt`,
        `${dir}/merged`,
      );
      assertEquals([merged.model_type, merged.architectures], ["phi3", ["Phi3ForCausalLM"]]);
      assert(typeof a.loss === "number" && Number.isFinite(a.loss), JSON.stringify(a));
      assertClose([b.loss as number], [a.loss as number], 1e-4, "adapter and merged model");
    });
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});
