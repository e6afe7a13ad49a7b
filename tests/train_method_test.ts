/** `train --method full` and `--method head` on the GPT-2 fixture: learning rates and the task head. */
import { largeDrawSizes } from "../lib/cli/method.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { modelShapes } from "../lib/models/shapes.ts";
import { fourierftConfig } from "../lib/peft/config.ts";
import { paperModels } from "../lib/peft/param_count.ts";
import { readRunLog } from "../lib/train/log.ts";
import { assert, assertEquals } from "./assert.ts";
import { GPT2, runCli, withTempDir, writeToyData } from "./train_helpers.ts";

/** A short run of `method` on `data` from `model` into `out`. */
function run(model: string, data: string, out: string, method: string, extra: string[] = []) {
  return runCli([
    "train",
    "--model",
    model,
    "--data",
    data,
    "--method",
    method,
    "--seq-len",
    "12",
    "--batch-size",
    "8",
    "--steps",
    "2",
    "--warmup-ratio",
    "0",
    "--schedule",
    "constant",
    "--log-every",
    "1",
    "--out",
    out,
    "--quiet",
    ...extra,
  ]);
}

Deno.test("--method full trains every weight, the head too, at --lr; --head-lr given sets the head's", async () => {
  await withTempDir("hartley_full_lr_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const rates = async (out: string) => {
      const rec = (await readRunLog(`${out}/log.jsonl`)).find((r) => r.type === "train")!;
      return Object.fromEntries(Object.entries(rec).filter(([k]) => k.startsWith("lr_")));
    };
    const one = await run(GPT2, data, `${dir}/one`, "full", ["--lr", "1e-4"]);
    assertEquals(one.code, 0, one.err);
    assertEquals(await rates(`${dir}/one`), { lr_weights: 1e-4, lr_other: 1e-4, lr_head: 1e-4 });
    const two = await run(GPT2, data, `${dir}/two`, "full", ["--lr", "1e-4", "--head-lr", "0.01"]);
    assertEquals(two.code, 0, two.err);
    assertEquals(await rates(`${dir}/two`), { lr_weights: 1e-4, lr_other: 1e-4, lr_head: 0.01 });
  });
});

Deno.test("--new-head starts a new head even when the checkpoint's has the data's label count", async () => {
  await withTempDir("hartley_new_head_same_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const score = async (out: string) =>
      Array.from(await (await openSafetensors(`${out}/model/model.safetensors`)).readF32("score.weight"));
    // a two-class classifier whose head was trained (seed 1)
    const trained = await run(GPT2, data, `${dir}/cls`, "head", ["--head-lr", "0.05", "--seed", "1"]);
    assertEquals(trained.code, 0, trained.err);
    const classifier = `${dir}/cls/model`;
    // --head-lr 0: each run's output holds the head it started with
    const frozen = ["--head-lr", "0"];
    const kept = await run(classifier, data, `${dir}/kept`, "head", frozen);
    assertEquals(kept.code, 0, kept.err);
    assertEquals(await score(`${dir}/kept`), await score(`${dir}/cls`), "the checkpoint's head is kept");
    const fresh = await run(classifier, data, `${dir}/fresh`, "head", [...frozen, "--new-head"]);
    assertEquals(fresh.code, 0, fresh.err);
    const base = await run(GPT2, data, `${dir}/base`, "head", frozen);
    assertEquals(base.code, 0, base.err);
    const started = await score(`${dir}/fresh`);
    const old = await score(`${dir}/cls`);
    assert(started.some((x, i) => x !== old[i]), "the checkpoint's head is dropped");
    assertEquals(started, await score(`${dir}/base`), "the new head is initialised as a missing head is");
  });
});

Deno.test("--method fourierft writes PEFT's FourierFTConfig defaults; --n, --alpha and --seed replace them", async () => {
  await withTempDir("hartley_fourierft_defaults_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const fields = async (out: string) => {
      const c = JSON.parse(await Deno.readTextFile(`${out}/adapter/adapter_config.json`));
      return [c.n_frequency, c.scaling, c.random_loc_seed];
    };
    const plain = await run(GPT2, data, `${dir}/plain`, "fourierft");
    assertEquals(plain.code, 0, plain.err);
    // PEFT's FourierFTConfig: n_frequency 1000, scaling 150.0, random_loc_seed 777
    assertEquals(await fields(`${dir}/plain`), [1000, 150, 777]);
    const set = await run(GPT2, data, `${dir}/set`, "fourierft", [
      "--n",
      "64",
      "--alpha",
      "20",
      "--seed",
      "3",
    ]);
    assertEquals(set.code, 0, set.err);
    assertEquals(await fields(`${dir}/set`), [64, 20, 3]);
  });
});

Deno.test("train --method fourierft names the layer sizes whose PEFT positions take PyTorch's 64-bit randperm", () => {
  const llama = paperModels().find((m) => m.name === "LLaMA-3.1-8B")!;
  const shapes = modelShapes(llama.config, { architecture: llama.architecture });
  // 128256×4096 (the LM head) is past 2³²/20 weights; 4096×4096 (q_proj) is not
  const config = fourierftConfig({ targetModules: ["q_proj", "lm_head"] });
  assertEquals(largeDrawSizes(shapes, config), ["128256×4096"]);
  assertEquals(largeDrawSizes(shapes, fourierftConfig({ targetModules: ["q_proj"] })), []);
});
