/**
 * `hartley pretrain`'s initial model and run directory: special-token ids as the tokenizer names
 * them, a resumed run held to its model and options, an --overwrite that fails leaving the run it
 * would replace, the tokenizer's companion files, llama's dropout and positions, errors that name
 * pretrain's flags, the recorded command, a default tokenizer the package ships, and models/default's
 * config.json as deno task pretrain-default writes it.
 */
import { join } from "node:path";
import { PRETRAIN_DEFAULT } from "../lib/cli/pretrain.ts";
import { initModel } from "../lib/cli/pretrain_init.ts";
import { shellLine } from "../lib/cli/run_dir.ts";
import { ensurePadToken } from "../lib/cli/task.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { pathExists } from "../lib/io/paths.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { assert, assertEquals } from "./assert.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

const BPE = "tests/fixtures/tokenizers/bytelevel_bpe.json";
const UNIGRAM = "tests/fixtures/tokenizers/unigram.json";

/** A tiny pretraining run (one layer of 16, 32 positions) on `text` into `out`. */
function tiny(text: string, out: string, extra: string[] = []): string[] {
  return [
    "pretrain",
    ...["--layers", "1", "--hidden", "16", "--heads", "2", "--positions", "32", "--tokenizer", BPE],
    ...["--data", text, "--seq-len", "16", "--batch-size", "2", "--steps", "2", "--max-eval", "2"],
    ...["--out", out, "--quiet", ...extra],
  ];
}

/** Some words to pretrain on, as `name` in `dir`. */
async function writeText(dir: string, name = "lm.txt"): Promise<string> {
  const words = "the cat sat on a mat and the dog ran far away from home while birds sang".split(" ");
  const path = join(dir, name);
  await Deno.writeTextFile(path, Array.from({ length: 600 }, (_, i) => words[(i * 5) % 16]).join(" "));
  return path;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

const ids = (c: Record<string, unknown>) => [c.bos_token_id, c.eos_token_id, c.pad_token_id];

Deno.test("pretrain: bos/eos/pad ids are the tokenizer's special tokens, as in the transformers-made fixtures", async () => {
  await withTempDir("hartley-pretrain-", async (dir) => {
    const text = await writeText(dir);
    const init = async (fixture: string, family: string) => {
      const out = join(dir, `${fixture}-${family}`);
      const tokenizer = `tests/fixtures/models/${fixture}/tokenizer.json`;
      const r = await runCli(tiny(text, out, ["--family", family, "--tokenizer", tokenizer, "--steps", "1"]));
      assertEquals(r.code, 0, r.err);
      return ids(await readJson(join(out, "init", "config.json")));
    };
    const fixture = async (name: string) => ids(await readJson(`tests/fixtures/models/${name}/config.json`));
    // <|endoftext|> for all three roles in GPT-2's; no pad token (null, as transformers' GPT2Config)
    assertEquals(await init("gpt2", "gpt2"), await fixture("gpt2"));
    // RoBERTa's <s>, </s>, <pad>: 0, 2, 1
    assertEquals(await init("roberta", "gpt2"), await fixture("roberta"));
    // LLaMA's <s> 1 and </s> 2, not <unk> 0 (the fixture's pad 0 is <unk>, set by hand: the
    // tokenizer has no pad token, so pad_token_id stays null, as LlamaConfig's default)
    const llama = await init("llama", "llama");
    assertEquals(llama.slice(0, 2), (await fixture("llama")).slice(0, 2));
    assertEquals(llama, [1, 2, null]);
    // hartley's own loader takes the same eos from the written model folder
    const tok = await loadTokenizer(join(dir, "llama-llama", "init"));
    assertEquals(tok.special.eos, 2);
  });
});

Deno.test("pretrain --resume refuses another model, tokenizer or option, naming pretrain's flags with both values", async () => {
  await withTempDir("hartley-pretrain-", async (dir) => {
    const text = await writeText(dir);
    const out = join(dir, "run");
    const stopped = await runCli(tiny(text, out, ["--stop-at", "1"]));
    assertEquals(stopped.code, 0, stopped.err);
    const cases: [string[], string][] = [
      [["--hidden", "32"], "differences: --hidden: 16 → 32; --intermediate: 64 → 128)"],
      [["--family", "llama", "--intermediate", "64"], "differences: --family: gpt2 → llama)"],
      [["--dropout", "0.1"], "differences: --dropout: 0 → 0.1)"],
      [
        ["--tokenizer", UNIGRAM],
        `--tokenizer: ${UNIGRAM} is not the run's tokenizer (tokenizer.json differs from ${out}/init's)`,
      ],
      [["--lr", "0.01", "--seed", "3"], "differences: --lr: 0.003 → 0.01; --seed: 0 → 3)"],
      [["--steps", "4"], "differences: --steps: 2 → 4)"],
    ];
    for (const [change, message] of cases) {
      const r = await runCli(tiny(text, out, [...change, "--resume"]));
      assertEquals(r.code, 2, `${change}: ${r.err}`);
      assert(r.err.includes(`--resume: the run in ${out} was started with other options`), r.err);
      assert(r.err.includes(message), r.err);
      assert(!r.err.includes("headLr"), r.err);
    }
    // a --config is compared key by key with the run's config.json
    const config = { ...await readJson(join(out, "init", "config.json")), n_layer: 2 };
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
    const withConfig = await runCli([
      "pretrain",
      ...["--config", join(dir, "config.json"), "--tokenizer", BPE, "--data", text, "--seq-len", "16"],
      ...["--batch-size", "2", "--steps", "2", "--max-eval", "2", "--out", out, "--quiet", "--resume"],
    ]);
    assertEquals(withConfig.code, 2, withConfig.err);
    assert(withConfig.err.includes("differences: --config: n_layer 1 → 2)"), withConfig.err);
    // the same options (from another spelling of the data's path) resume it
    const resumed = await runCli(tiny(join(dir, ".", "lm.txt"), out, ["--resume"]));
    assertEquals(resumed.code, 0, resumed.err);
    assert(await pathExists(join(out, "model", "model.safetensors")), "finished");
  });
});

Deno.test("pretrain --overwrite that fails before its run starts leaves the run in --out resumable", async () => {
  await withTempDir("hartley-pretrain-", async (dir) => {
    const text = await writeText(dir);
    const out = join(dir, "run");
    const stopped = await runCli(tiny(text, out, ["--stop-at", "1"]));
    assertEquals(stopped.code, 0, stopped.err);
    const before = await Deno.readTextFile(join(out, "init", "config.json"));
    // data that is not there, and flags train refuses: each after pretrain wrote the new init/
    const missing = await runCli(tiny(join(dir, "none.txt"), out, ["--hidden", "32", "--overwrite"]));
    assertEquals(missing.code, 1, missing.err);
    const refused = await runCli(
      tiny(text, out, ["--hidden", "32", "--eval-every", "1", "--eval-fraction", "0", "--overwrite"]),
    );
    assertEquals(refused.code, 2, refused.err);
    assertEquals(await Deno.readTextFile(join(out, "init", "config.json")), before);
    assert(!await pathExists(join(out, "init.previous")), "nothing set aside is left");
    // a session stopped before its run started leaves the run's init/ set aside: --resume puts it back
    await Deno.rename(join(out, "init"), join(out, "init.previous"));
    await Deno.mkdir(join(out, "init"));
    await Deno.writeTextFile(join(out, "init", "config.json"), "{}");
    const resumed = await runCli(tiny(text, out, ["--resume"]));
    assertEquals(resumed.code, 0, resumed.err);
    assertEquals(await Deno.readTextFile(join(out, "init", "config.json")), before);
    // an --overwrite whose run starts replaces the run, init/ included
    const over = await runCli(tiny(text, out, ["--hidden", "32", "--overwrite"]));
    assertEquals(over.code, 0, over.err);
    assertEquals((await readJson(join(out, "init", "config.json"))).n_embd, 32);
    assert(!await pathExists(join(out, "init.previous")), "the old init/ went with the old run");
  });
});

Deno.test("pretrain --tokenizer DIR: tokenizer_config.json, special_tokens_map.json and chat_template.jinja come along and shape the tokens", async () => {
  await withTempDir("hartley-pretrain-", async (dir) => {
    const text = await writeText(dir);
    const tok = join(dir, "tok");
    await Deno.mkdir(tok);
    await Deno.copyFile(UNIGRAM, join(tok, "tokenizer.json"));
    const files: Record<string, string> = {
      // a LLaMA checkpoint's: <s> before each text
      "tokenizer_config.json": JSON.stringify({
        add_bos_token: true,
        add_eos_token: false,
        bos_token: "<s>",
      }),
      "special_tokens_map.json": JSON.stringify({ eos_token: "</s>", unk_token: "<unk>" }),
      "chat_template.jinja": "{% for m in messages %}{{ m.content }}{% endfor %}",
    };
    for (const [name, content] of Object.entries(files)) await Deno.writeTextFile(join(tok, name), content);
    const out = join(dir, "run"), exported = join(dir, "export");
    const r = await runCli(
      tiny(text, out, ["--family", "llama", "--tokenizer", tok, "--steps", "1", "--export", exported]),
    );
    assertEquals(r.code, 0, r.err);
    for (const folder of [join(out, "init"), exported]) {
      for (const [name, content] of Object.entries(files)) {
        assertEquals(await Deno.readTextFile(join(folder, name)), content, `${folder}/${name}`);
      }
      // what training read from init/, and a user reads from the export: <s> first
      const tokens = (await loadTokenizer(folder)).encode("the cat sat");
      assertEquals(tokens[0], 1, `${folder}: ${tokens}`);
    }
    assertEquals(ids(await readJson(join(exported, "config.json"))), [1, 2, null]);
    // training saw the <s> before its text: one token more than with tokenizer.json alone
    const counted = async (tokenizer: string) => {
      const args = tiny(text, join(dir, "count"), [
        "--family",
        "llama",
        "--tokenizer",
        tokenizer,
        "--steps",
        "1",
      ]);
      const r = await runCli([...args.filter((a) => a !== "--quiet"), "--overwrite"]);
      assertEquals(r.code, 0, r.err);
      return Number(/: (\d+) tokens/.exec(r.err)?.[1]);
    };
    assertEquals(await counted(tok), await counted(UNIGRAM) + 1);
  });
});

Deno.test("pretrain --family llama: --dropout sets attention_dropout; --seq-len past --positions is refused", async () => {
  await withTempDir("hartley-pretrain-", async (dir) => {
    const text = await writeText(dir);
    const llama = ["--family", "llama", "--tokenizer", UNIGRAM, "--steps", "1"];
    const out = join(dir, "run");
    const r = await runCli(tiny(text, out, [...llama, "--dropout", "0.1"]));
    assertEquals(r.code, 0, r.err);
    assertEquals((await readJson(join(out, "init", "config.json"))).attention_dropout, 0.1);
    const help = (await runCli(["pretrain", "--help"])).out;
    assert(help.includes("llama's of attention probabilities, its only one (attention_dropout)"), help);

    const long = await runCli(tiny(text, join(dir, "long"), [...llama, "--positions", "8"]));
    assertEquals(long.code, 2, long.err);
    assert(
      long.err.includes("--seq-len 16 is more than --positions 8: lower --seq-len or raise --positions"),
    );
    const config = join(dir, "config.json");
    await Deno.writeTextFile(
      config,
      JSON.stringify({ ...await readJson(join(out, "init", "config.json")), max_position_embeddings: 8 }),
    );
    const past = await runCli([
      "pretrain",
      ...[
        "--config",
        config,
        "--tokenizer",
        UNIGRAM,
        "--data",
        text,
        "--seq-len",
        "16",
        "--out",
        join(dir, "long"),
      ],
    ]);
    assertEquals(past.code, 2, past.err);
    assert(past.err.includes(`--seq-len 16 is more than the 8 positions of --config ${config}`), past.err);
    assert(!await pathExists(join(dir, "long")), "nothing written");
  });
});

Deno.test("pretrain --config: one that is no causal LM, or too small for the tokenizer, is refused naming the flags", async () => {
  await withTempDir("hartley-pretrain-", async (dir) => {
    const text = await writeText(dir);
    const out = join(dir, "run");
    const run = (config: string) =>
      runCli([
        "pretrain",
        ...[
          "--config",
          config,
          "--tokenizer",
          BPE,
          "--data",
          text,
          "--seq-len",
          "8",
          "--steps",
          "1",
          "--out",
          out,
        ],
      ]);
    const llamaCls = join(dir, "llama_cls.json");
    await Deno.writeTextFile(
      llamaCls,
      JSON.stringify({
        ...await readJson("tests/fixtures/models/llama/config.json"),
        architectures: ["LlamaForSequenceClassification"],
      }),
    );
    for (
      const [config, arch] of [
        ["tests/fixtures/models/bert", "BertForSequenceClassification (a bert model)"],
        ["tests/fixtures/models/vit", "ViTForImageClassification (a vit model)"],
        [llamaCls, "LlamaForSequenceClassification (a llama model)"],
      ]
    ) {
      const r = await run(config);
      assertEquals(r.code, 2, r.err);
      assert(r.err.includes(`--config ${config}: its ${arch} is no causal LM`), r.err);
      assert(!r.err.includes("--task"), r.err);
    }
    const small = join(dir, "small.json");
    await Deno.writeTextFile(
      small,
      JSON.stringify({ ...await readJson("tests/fixtures/models/gpt2/config.json"), vocab_size: 100 }),
    );
    const r = await run(small);
    assertEquals(r.code, 2, r.err);
    assert(
      r.err.includes(
        `--tokenizer ${BPE} produces ids up to 511, more than the vocab_size 100 of --config ${small} takes`,
      ),
      r.err,
    );
    assert(!r.err.includes("init"), r.err);
    assert(!await pathExists(out), "nothing written");
  });
});

Deno.test("pretrain: pretraining.json's command is shell-quoted, without the options of one session", async () => {
  await withTempDir("hartley-pretrain-", async (dir) => {
    const text = await writeText(dir, "my text.txt");
    const args = tiny(text, join(dir, "run"), ["--export", join(dir, "export")]);
    const r = await runCli(args);
    assertEquals(r.code, 0, r.err);
    const record = await readJson(join(dir, "export", "pretraining.json"));
    const recipe = args.filter((a) => a !== "--quiet");
    assertEquals(record.command, `deno run -A cli.ts ${shellLine(recipe)}`);
    assert((record.command as string).includes(`--data '${text}'`), `${record.command}`);
  });
});

Deno.test("pretrain's default --tokenizer, and deno task pretrain-default's, are files the package ships", async () => {
  const deno = await readJson("deno.json");
  const excluded = (deno.publish as { exclude: string[] }).exclude;
  const help = (await runCli(["pretrain", "--help"])).out;
  const fallback = /--tokenizer FILE .*\[default (\S+)\]/.exec(help)?.[1] ?? "";
  assertEquals(fallback, "models/default/tokenizer.json");
  const task = PRETRAIN_DEFAULT.split(" ");
  const named = task[task.indexOf("--tokenizer") + 1];
  for (const path of [fallback, named]) {
    assert(await pathExists(path), path);
    assert(!excluded.some((e) => path.startsWith(e)), `${path} is left out of the package (${excluded})`);
  }
});

Deno.test("models/default's config.json is what deno task pretrain-default writes; the demo's classifier pools as before", async () => {
  const words = PRETRAIN_DEFAULT.split(" ");
  const flag = (name: string) => words[words.indexOf(`--${name}`) + 1];
  const { json } = await initModel({
    family: flag("family"),
    layers: Number(flag("layers")),
    hidden: Number(flag("hidden")),
    heads: Number(flag("heads")),
    positions: Number(flag("positions")),
    dropout: 0, // pretrain's default, as --intermediate's 4 × hidden
    tokenizer: flag("tokenizer"),
    seqLen: Number(flag("seq-len")),
  });
  // the tokenizer has no pad token: pad_token_id null, as transformers' GPT2Config
  assertEquals(await readJson("models/default/config.json"), json);
  assertEquals(json.pad_token_id, null);
  // a classifier of it pools each row at its last token that is not the padding: <|endoftext|>, id 0
  const config = await loadHfConfig("models/default/config.json");
  assert(ensurePadToken(config, "seq-cls", await loadTokenizer("models/default")));
  assertEquals(config.padTokenId, 0);
});
