/** One source for what was defined twice: PEFT task types, the ignore index, leftover checkpoints. */
import { join } from "node:path";
import { adapterConfigOf, METHODS } from "../lib/cli/method.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { peftTaskType, taskOfPeftType } from "../lib/peft/config.ts";
import { crossEntropy, Tensor } from "../lib/tensor/mod.ts";
import { findCheckpoint } from "../lib/train/checkpoint.ts";
import { TASKS } from "../lib/train/tasks.ts";
import { assertEquals, assertThrows } from "./assert.ts";
import { methodOptions } from "./model_helpers.ts";
import { withTempDir } from "./temp_dir.ts";

Deno.test("task ↔ PEFT task_type: every task's adapter config names the task it was trained for", () => {
  for (const task of TASKS) {
    const modelType = task === "image-cls" ? "vit" : "gpt2";
    for (const method of METHODS) {
      const config = adapterConfigOf(methodOptions(method, task), "base");
      if (!config) continue; // full, head: no adapter
      assertEquals(config.taskType, peftTaskType(task), `${method} ${task}`);
      assertEquals(taskOfPeftType(config, modelType), task, `${method} ${task}`);
    }
  }
  // an image classifier saved with a sequence classifier's task_type (as some PEFT users set it)
  assertEquals(taskOfPeftType({ taskType: "SEQ_CLS", modulesToSave: null }, "vit"), "image-cls");
  // nothing to go by: the model's config decides
  assertEquals(taskOfPeftType({ taskType: null, modulesToSave: null }, "vit"), null);
  assertEquals(taskOfPeftType({ taskType: "FEATURE_EXTRACTION", modulesToSave: null }, "gpt2"), null);
});

Deno.test("crossEntropy ignoreIndex: targets of that value do not count, -100 is then out of range", async () => {
  const gpu = await getGpu();
  const logits = Tensor.from(gpu, new Float32Array([2, 0, 0, 0, 3, 0]), [2, 3]);
  const loss = async (targets: number[], ignoreIndex?: number) => {
    const t = Tensor.from(gpu, new Int32Array(targets), [2]);
    const l = crossEntropy(logits, t, ignoreIndex === undefined ? {} : { ignoreIndex });
    const v = await l.item();
    l.dispose();
    t.dispose();
    return v;
  };
  const first = -Math.log(Math.exp(2) / (Math.exp(2) + 2));
  assertEquals((await loss([0, 7], 7)).toFixed(6), first.toFixed(6));
  assertEquals((await loss([0, -100])).toFixed(6), first.toFixed(6));
  assertThrows(() =>
    crossEntropy(logits, Tensor.from(gpu, new Int32Array([0, -100]), [2]), { ignoreIndex: 7 })
  );
  logits.dispose();
});

Deno.test("findCheckpoint: a folder set aside by an atomic write is found, other dot-folders are not", async () => {
  await withTempDir("hartley_leftover_", async (dir) => {
    const write = async (name: string, step: number) => {
      await Deno.mkdir(join(dir, name));
      await Deno.writeTextFile(join(dir, name, "trainer_state.json"), JSON.stringify({ step }));
    };
    // not what writeDirAtomic leaves (its id is 8 hex digits)
    await write(".checkpoint.copy.old", 9);
    assertEquals(await findCheckpoint(dir), null);
    await write(".checkpoint.0a1b2c3d.old", 4);
    assertEquals(await findCheckpoint(dir), join(dir, ".checkpoint.0a1b2c3d.old"));
  });
});
