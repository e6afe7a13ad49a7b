/**
 * The files of a merged model directory: what `merge` copies from the base folder (through links,
 * as a Hugging Face cache snapshot holds them; the named chat templates; not an adapter's config),
 * what an overwritten `--out` keeps, an `--out` that is a link, and that the base's frozen weights,
 * which the merge never reads, load compactly without changing a byte of the output.
 */
import { join, relative } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel } from "../lib/models/load.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { loraConfig } from "../lib/peft/config.ts";
import { GPT2, runCli, withTempDir, writeToyData } from "./train_helpers.ts";

const GPT2_LORA = "tests/fixtures/adapters/gpt2-lora";

/** Every file under `dir` (links followed), by its path relative to `dir`, sorted. */
async function filesUnder(dir: string, sub = dir): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(sub)) {
    const path = join(sub, e.name);
    if ((await Deno.stat(path)).isDirectory) out.push(...await filesUnder(dir, path));
    else out.push(relative(dir, path));
  }
  return out.sort();
}

/** `merge` of `adapter` into `model`, writing `out` (more flags in `extra`), which must succeed. */
async function merge(model: string, out: string, extra: string[] = [], adapter = GPT2_LORA) {
  const r = await runCli(["merge", "--model", model, "--adapter", adapter, "--out", out, ...extra]);
  assertEquals(r.code, 0, r.err);
  return r;
}

/** The `storage …` line `merge` printed (how the base's weights were held while merging). */
function storageLine(out: string): string {
  return out.split("\n").find((l) => l.startsWith("storage ")) ?? `no storage line in:\n${out}`;
}

/** Whether the files `names` hold the same bytes in `a` and `b`. */
async function assertSameBytes(a: string, b: string, names: string[]): Promise<void> {
  for (const name of names) {
    assertEquals(await Deno.readFile(join(a, name)), await Deno.readFile(join(b, name)), name);
  }
}

/** A copy of the GPT-2 fixture's files in `dir`. */
async function copyGpt2(dir: string): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const names = await filesUnder(GPT2);
  for (const name of names) await Deno.copyFile(join(GPT2, name), join(dir, name));
  return names;
}

/**
 * The GPT-2 fixture laid out as a Hugging Face cache under `dir`: each file in blobs/, linked to
 * from snapshots/<hash>/; returns the snapshot folder.
 */
async function gpt2Snapshot(dir: string): Promise<string> {
  const snapshot = `${dir}/hub/snapshots/0123abc`;
  await Deno.mkdir(`${dir}/hub/blobs`, { recursive: true });
  await Deno.mkdir(snapshot, { recursive: true });
  for (const [i, name] of (await filesUnder(GPT2)).entries()) {
    await Deno.copyFile(join(GPT2, name), `${dir}/hub/blobs/${i}`);
    await Deno.symlink(`../../blobs/${i}`, join(snapshot, name));
  }
  return snapshot;
}

Deno.test("merge reads a Hugging Face cache snapshot (files linked into blobs/) and writes the files' bytes", async () => {
  await withTempDir("hartley_snapshot_", async (dir) => {
    const snapshot = await gpt2Snapshot(dir);
    await merge(snapshot, `${dir}/merged`);
    await merge(GPT2, `${dir}/plain`);
    assertEquals(await filesUnder(`${dir}/merged`), await filesUnder(`${dir}/plain`));
    for (const name of await filesUnder(`${dir}/merged`)) {
      assert((await Deno.lstat(`${dir}/merged/${name}`)).isFile, `${name}: a file, not a link`);
    }
    await assertSameBytes(`${dir}/merged`, `${dir}/plain`, await filesUnder(`${dir}/plain`));
    // a link whose blob is gone (a download cut short) is named, not left out
    await Deno.symlink("../../blobs/gone", `${snapshot}/tokenizer_config.json`);
    const args = ["merge", "--model", snapshot, "--adapter", GPT2_LORA, "--out", `${dir}/again`];
    const r = await runCli(args);
    assertEquals(r.code, 1, r.err);
    assert(r.err.includes(`${snapshot}/tokenizer_config.json: a link to a file that is missing`), r.err);
  });
});

Deno.test("train --method head from a Hugging Face cache snapshot saves its model", async () => {
  await withTempDir("hartley_snapshot_train_", async (dir) => {
    const snapshot = await gpt2Snapshot(dir);
    const data = await writeToyData(dir, 16);
    const args = ["--data", data, "--method", "head", "--seq-len", "12", "--batch-size", "8", "--steps", "1"];
    const r = await runCli(["train", "--model", snapshot, ...args, "--out", `${dir}/run`, "--quiet"]);
    assertEquals(r.code, 0, r.err);
    const files = await filesUnder(`${dir}/run/model`);
    assert(files.includes("config.json") && files.includes("tokenizer.json"), `${files}`);
    for (const name of files) assert((await Deno.lstat(`${dir}/run/model/${name}`)).isFile, name);
  });
});

Deno.test("merge copies additional_chat_templates/ (links followed), not weight folders", async () => {
  await withTempDir("hartley_templates_", async (dir) => {
    const base = `${dir}/base`;
    await copyGpt2(base);
    await Deno.writeTextFile(`${base}/chat_template.jinja`, "{{ messages }}");
    await Deno.mkdir(`${base}/additional_chat_templates`);
    await Deno.writeTextFile(`${base}/additional_chat_templates/tool_use.jinja`, "{{ tools }}");
    await Deno.writeTextFile(`${dir}/rag.jinja`, "{{ documents }}");
    await Deno.symlink(`${dir}/rag.jinja`, `${base}/additional_chat_templates/rag.jinja`);
    await Deno.mkdir(`${base}/onnx`);
    await Deno.writeTextFile(`${base}/onnx/model.onnx`, "weights in another format");
    await merge(base, `${dir}/merged`);
    const files = await filesUnder(`${dir}/merged`);
    assert(!files.some((f) => f.startsWith("onnx/")), `${files}`);
    assertEquals(files.filter((f) => f.endsWith(".jinja")), [
      "additional_chat_templates/rag.jinja",
      "additional_chat_templates/tool_use.jinja",
      "chat_template.jinja",
    ]);
    assert((await Deno.lstat(`${dir}/merged/additional_chat_templates/rag.jinja`)).isFile, "a file");
    await assertSameBytes(`${dir}/merged`, base, files.filter((f) => f.endsWith(".jinja")));
  });
});

Deno.test("merge does not copy an adapter_config.json of the base folder (transformers would load an adapter)", async () => {
  await withTempDir("hartley_base_adapter_", async (dir) => {
    const base = `${dir}/base`;
    const names = await copyGpt2(base);
    await Deno.copyFile(`${GPT2_LORA}/adapter_config.json`, `${base}/adapter_config.json`);
    await merge(base, `${dir}/merged`);
    assertEquals(await filesUnder(`${dir}/merged`), names.filter((n) => n !== "reference.safetensors"));
  });
});

Deno.test("merge --overwrite drops every file of the old model in --out, and keeps what else it holds", async () => {
  await withTempDir("hartley_overwrite_", async (dir) => {
    const out = `${dir}/out`;
    // the previous model there: a chat LLaMA with files the GPT-2 model does not have
    await Deno.mkdir(out);
    for (const f of await filesUnder("tests/fixtures/models/llama")) {
      await Deno.copyFile(`tests/fixtures/models/llama/${f}`, `${out}/${f}`);
    }
    const old = [
      "chat_template.jinja",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "preprocessor_config.json",
      "additional_chat_templates/tool_use.jinja",
      "model-00002-of-00002.safetensors",
    ];
    await Deno.mkdir(`${out}/additional_chat_templates`);
    for (const f of old) await Deno.writeTextFile(`${out}/${f}`, "the old model's");
    // not a model's: a card, notes, another folder
    const mine = ["README.md", "notes.txt", "runs/log.txt"];
    await Deno.mkdir(`${out}/runs`);
    for (const f of mine) await Deno.writeTextFile(`${out}/${f}`, "mine");
    await merge(GPT2, out, ["--overwrite"]);
    await merge(GPT2, `${dir}/fresh`);
    assertEquals(await filesUnder(out), [...await filesUnder(`${dir}/fresh`), ...mine].sort());
    for (const f of mine) assertEquals(await Deno.readTextFile(`${out}/${f}`), "mine");
    await assertSameBytes(out, `${dir}/fresh`, await filesUnder(`${dir}/fresh`));
  });
});

Deno.test("merge --out that is a link to a folder replaces what the folder holds and keeps the link", async () => {
  await withTempDir("hartley_outlink_", async (dir) => {
    await Deno.mkdir(`${dir}/real`);
    await Deno.writeTextFile(`${dir}/real/model-00001-of-00002.safetensors`, "an old shard");
    await Deno.symlink(`${dir}/real`, `${dir}/link`);
    await merge(GPT2, `${dir}/link`, ["--overwrite"]);
    await merge(GPT2, `${dir}/fresh`);
    assert((await Deno.lstat(`${dir}/link`)).isSymlink, "--out is still a link");
    assertEquals(await Deno.realPath(`${dir}/link`), await Deno.realPath(`${dir}/real`));
    assertEquals(await filesUnder(`${dir}/real`), await filesUnder(`${dir}/fresh`));
    await assertSameBytes(`${dir}/real`, `${dir}/fresh`, await filesUnder(`${dir}/fresh`));
  });
});

Deno.test("merge stores the frozen weights it never reads compactly (--dtype, auto: q4) and writes the same bytes", async () => {
  await withTempDir("hartley_merge_dtype_", async (dir) => {
    const cases = [
      ["gpt2", GPT2_LORA],
      ["llama", "tests/fixtures/adapters/llama-lora"],
      ["roberta", "tests/fixtures/adapters/roberta-fourierft"],
    ];
    for (const [name, adapter] of cases) {
      const model = `tests/fixtures/models/${name}`;
      const f32 = await merge(model, `${dir}/${name}-f32`, ["--dtype", "f32"], adapter);
      assert(/^storage linear weights \d+ f32;/.test(storageLine(f32.err)), storageLine(f32.err));
      const auto = await merge(model, `${dir}/${name}-auto`, [], adapter);
      assert(/^storage linear weights \d+ q4/.test(storageLine(auto.err)), storageLine(auto.err));
      const files = await filesUnder(`${dir}/${name}-f32`);
      assertEquals(await filesUnder(`${dir}/${name}-auto`), files, name);
      await assertSameBytes(`${dir}/${name}-auto`, `${dir}/${name}-f32`, files);
    }
  });
});

Deno.test("merge --dtype auto keeps f32 where the adapter saves more than a classifier head (modules_to_save)", async () => {
  await withTempDir("hartley_merge_saved_", async (dir) => {
    const gpu = await getGpu();
    const model = await loadModel(gpu, GPT2);
    const peft = await attachAdapter(
      model,
      loraConfig({ r: 2, initLoraWeights: false, fanInFanOut: true, modulesToSave: ["ln_f"] }),
    );
    try {
      await peft.save(`${dir}/adapter`);
    } finally {
      peft.detach();
      model.dispose();
    }
    const r = await merge(GPT2, `${dir}/merged`, [], `${dir}/adapter`);
    assert(/^storage linear weights \d+ f32;/.test(storageLine(r.err)), storageLine(r.err));
  });
});
