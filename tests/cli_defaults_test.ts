/**
 * The defaults that ship with the code, the embedded model (every command's --model) and pretrain's
 * --tokenizer, are the copies beside it wherever the CLI runs from: written `models/default` from the
 * checkout's root, else as absolute paths. Run from a remote URL, they cannot be read: a command
 * says so and names the flag to give.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_MODEL } from "../lib/cli/args.ts";
import { assert, assertEquals } from "./assert.ts";
import { cliProcess, withTempDir, writeToyData } from "./train_helpers.ts";

const MODEL = fileURLToPath(new URL("../models/default", import.meta.url));

/** `cli.ts ARGS` as a subprocess started in `cwd`. */
const cliIn = (cwd: string, args: string[]) => cliProcess(args, { cwd });

Deno.test("cli defaults: from the checkout's root the embedded model is written models/default", () => {
  assertEquals(DEFAULT_MODEL, "models/default");
});

Deno.test("cli defaults: from another working directory predict, train and pretrain find the embedded model and tokenizer", async () => {
  await withTempDir("hartley-defaults-", async (dir) => {
    const help = await cliIn(dir, ["train", "--help"]);
    assert(help.out.includes(`[default ${MODEL}]`), help.out);

    const predicted = await cliIn(dir, [
      "predict",
      "--task",
      "causal-lm",
      "--text",
      "The",
      "--max-new-tokens",
      "1",
    ]);
    assertEquals(predicted.code, 0, predicted.err);

    const data = await writeToyData(dir, 16);
    const trained = await cliIn(dir, [
      "train",
      ...["--data", data, "--steps", "1", "--batch-size", "4", "--seq-len", "8", "--n", "8"],
      ...["--eval-fraction", "0.25", "--out", "run", "--quiet"],
    ]);
    assertEquals(trained.code, 0, trained.err);
    // an adapter trained in the checkout's root records the shipped model as "models/default"
    // (however the path was spelt)
    const config = join(dir, "run", "adapter", "adapter_config.json");
    const adapter = JSON.parse(await Deno.readTextFile(config));
    for (const base of ["models/default", "./models/default/"]) {
      await Deno.writeTextFile(config, JSON.stringify({ ...adapter, base_model_name_or_path: base }));
      const used = await cliIn(dir, [
        "eval",
        "--adapter",
        "run/adapter",
        "--data",
        data,
        "--seq-len",
        "8",
        "-q",
      ]);
      assertEquals(used.code, 0, `${base}: ${used.err}`);
    }

    await Deno.writeTextFile(join(dir, "lm.txt"), "the cat sat on the mat and the dog ran home ".repeat(20));
    const pretrained = await cliIn(dir, [
      "pretrain",
      ...["--layers", "1", "--hidden", "16", "--heads", "2", "--positions", "32", "--data", "lm.txt"],
      ...[
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--max-eval",
        "2",
        "--out",
        "lm",
        "--quiet",
      ],
    ]);
    assertEquals(pretrained.code, 0, pretrained.err);
    assertEquals(
      await Deno.readTextFile(join(dir, "lm", "init", "tokenizer.json")),
      await Deno.readTextFile(join(MODEL, "tokenizer.json")),
    );
  });
});

// as remote_import_test.ts: the tree served over HTTP stands for the package on JSR
Deno.test("cli defaults: imported from a remote URL, the embedded model is refused naming --model", async () => {
  const root = new URL("../", import.meta.url);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    try {
      const body = await Deno.readFile(new URL("." + new URL(req.url).pathname, root));
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const script = `
    import { checkShipped, DEFAULT_MODEL } from "${base}/lib/cli/args.ts";
    checkShipped("model", "${MODEL}", "DIR"); // a path given on disk is read as usual
    let refused = "";
    try {
      checkShipped("model", DEFAULT_MODEL, "DIR");
    } catch (e) {
      refused = e.message;
    }
    console.log(JSON.stringify({ model: DEFAULT_MODEL, refused }));
  `;
  try {
    const r = await withTempDir("hartley-deno-dir-", (denoDir) =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", "--no-lock", script], // random ports must not land in deno.lock
        env: { DENO_DIR: denoDir },
      }).output());
    assert(r.success, new TextDecoder().decode(r.stderr));
    const { model, refused } = JSON.parse(new TextDecoder().decode(r.stdout));
    assertEquals(model, `${base}/models/default`);
    assertEquals(
      refused,
      `--model is needed: its default, models/default, ships with hartley but cannot be read where ` +
        `hartley runs from a remote URL (${base}/); give --model DIR`,
    );
  } finally {
    await server.shutdown();
  }
});
