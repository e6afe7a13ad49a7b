// DistilBERT through the CLI: SSH on its default targets (q_lin, v_lin) trains the whole head,
// pre_classifier included, and the merged directory is a DistilBertForSequenceClassification.
import { openSafetensors } from "../lib/io/safetensors.ts";
import { assert, assertClose, assertEquals } from "./assert.ts";
import { asDistilBert } from "./encoder_test_helpers.ts";
import { evalAdapterAndMerged, runCli, withTempDir, writeToyData } from "./train_helpers.ts";

Deno.test("CLI: SSH on DistilBERT saves pre_classifier with the adapter; eval of adapter and merged model agree", async () => {
  const model = await asDistilBert();
  try {
    await withTempDir("distilbert", async (dir) => {
      const data = await writeToyData(dir, 48, 1, ["a", "b", "c"]);
      const train = await runCli([
        "train",
        "--model",
        model,
        "--data",
        data,
        "--seq-len",
        "12",
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--n",
        "32",
        "--alpha",
        "20",
        "--lr",
        "0.1",
        "--head-lr",
        "0.01",
        "--eval-fraction",
        "0.25",
        "--out",
        `${dir}/run`,
        "--quiet",
      ]);
      assertEquals(train.code, 0, train.err);
      const config = JSON.parse(await Deno.readTextFile(`${dir}/run/adapter/adapter_config.json`));
      assertEquals([config.task_type, config.modules_to_save], ["SEQ_CLS", ["pre_classifier"]]);
      const saved = await openSafetensors(`${dir}/run/adapter/adapter_model.safetensors`);
      assert(saved.names.some((n) => n.includes("pre_classifier")), `saved: ${saved.names.join(", ")}`);
      assert(saved.names.some((n) => n.includes("q_lin")) && saved.names.some((n) => n.includes("v_lin")));
      const { viaAdapter: a, viaMerged: b, config: described } = await evalAdapterAndMerged(
        model,
        `${dir}/run/adapter`,
        data,
        `${dir}/merged`,
      );
      assertEquals(described.architectures, ["DistilBertForSequenceClassification"]);
      const scores = (r: Record<string, unknown>) => [r.loss, r.accuracy] as number[];
      assertClose(scores(a), scores(b), 1e-4, "adapter and merged model");
    });
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});
