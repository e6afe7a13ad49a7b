/**
 * Conversations: each answer of a {@link Chat} equals a fresh generation on the rendered
 * conversation (the cache kept across turns holds what they share, and no more); `hartley chat`
 * reads messages line by line, with /reset and /exit.
 */
import { chatTemplate } from "../lib/io/chat_template.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { Chat } from "../lib/infer/chat.ts";
import { generate, keepSharedPrefix } from "../lib/infer/generate.ts";
import { chatCommand } from "../lib/cli/chat.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { samplingOf } from "../lib/cli/generation.ts";
import { endTokenIds } from "../lib/infer/generate.ts";
import { runCli, withTempDir } from "./train_helpers.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";

// short role marks: the tiny byte-level vocabulary spells ChatML's markers out letter by letter
const TEMPLATE = "{% for m in messages %}{{ m.role[0] }}: {{ m.content }}\n{% endfor %}" +
  "{% if add_generation_prompt %}a:{% endif %}";

Deno.test("Chat: each turn's answer is a fresh generation's on the rendered conversation, sampled or greedy", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, fixtureModel("gpt2-brown"));
  const tokenizer = await loadModelTokenizer(model.config);
  const template = chatTemplate(TEMPLATE, "test");
  try {
    for (const sampling of [{}, { temperature: 0.8, topK: 20, seed: 3 }]) {
      const options = { system: "Be brief.", maxNewTokens: 12, stopAtEos: false, ...sampling };
      const chat = new Chat(model, tokenizer, template, options);
      try {
        for (const [turn, text] of ["The jury said", "And the city?", "Why?"].entries()) {
          const ids = tokenizer.encode(
            template.render([...chat.messages, { role: "user", content: text }], true),
            {
              addSpecialTokens: false,
            },
          );
          const fresh = await generate(model, tokenizer, ids, {
            ...options,
            seed: (options.seed ?? 0) + turn,
          });
          const g = await chat.say(text);
          assertEquals(g.ids, fresh.ids, `turn ${turn}`);
          assertEquals(chat.messages.at(-1), { role: "assistant", content: fresh.text });
        }
        assertEquals(chat.messages.length, 7);
        chat.reset();
        assertEquals(chat.messages, [{ role: "system", content: "Be brief." }]);
      } finally {
        chat.dispose();
      }
    }
  } finally {
    model.dispose();
  }
});

Deno.test("keepSharedPrefix: the cache keeps the tokens both sequences start with, and at least one to run", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, fixtureModel("gpt2"));
  const cache = model.newCache!();
  try {
    const cached = [5, 6, 7, 8, 9];
    tidy(() =>
      noGrad(() => {
        const host = Int32Array.from(cached);
        model.forward({ inputIds: Tensor.from(gpu, host, [1, 5]), inputIdsHost: host }, { cache });
      })
    );
    keepSharedPrefix(cache, cached, [5, 6, 7, 1, 2]);
    assertEquals(cache.length, 3);
    keepSharedPrefix(cache, cached, [5, 6, 7]);
    assertEquals(cache.length, 2, "one token left to run");
    keepSharedPrefix(cache, cached, [1]);
    assertEquals(cache.length, 0);
    assertThrows(() => cache.truncate(1), "outside 0..0");
  } finally {
    cache.dispose();
    model.dispose();
  }
});

Deno.test("hartley chat: one answer per line, /reset starts over, /exit ends; no template is an error", async () => {
  const dir = await tempModelDir(fixtureModel("gpt2-brown"));
  try {
    const args = ["--model", dir, "--max-new-tokens", "6"];
    const talk = async (input: string) => {
      const out: string[] = [];
      const io = {
        input: ReadableStream.from([new TextEncoder().encode(input)]),
        write: (t: string) => void out.push(t),
        prompt: false,
      };
      const code = await chatCommand(args, io);
      return { code, lines: out.join("").split("\n").slice(0, -1) };
    };
    assertEquals((await talk("hello\n")).code, 2, "no chat template");
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ chat_template: TEMPLATE }));
    const r = await talk("The jury said\n\nand?\n/reset\nThe jury said\n/exit\nnever answered\n");
    assertEquals(r.code, 0);
    assertEquals(r.lines.length, 3);
    assertEquals(r.lines[2], r.lines[0], "after /reset the same first answer");
    const once = await talk("The jury said");
    assertEquals(once.lines, [r.lines[0]], "the last line needs no newline");
    // the template's variables: a template that reads one answers another prompt
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({
        chat_template: `{% if opening is defined %}{{ opening }}{% else %}${TEMPLATE}{% endif %}`,
      }),
    );
    args.push("--template-kwargs", '{"opening": "In the morning the weather was"}');
    const opened = await talk("The jury said");
    assertEquals(opened.code, 0);
    assert(opened.lines[0] !== r.lines[0], `another prompt, another answer: ${opened.lines[0]}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("samplingOf: the flags, else generation_config.json's settings as transformers reads them, else greedy", async () => {
  const dir = await Deno.makeTempDir();
  const write = (json: unknown) => Deno.writeTextFile(`${dir}/generation_config.json`, JSON.stringify(json));
  try {
    assertEquals(await samplingOf(dir, {}), {
      temperature: 0,
      topK: 0,
      topP: 1,
      minP: 0,
      repetitionPenalty: 1,
      note: null,
    });
    await write({ do_sample: true, temperature: 0.7, top_p: 0.8, top_k: 20, repetition_penalty: 1.05 });
    const qwen = await samplingOf(dir, {});
    assertEquals([qwen.temperature, qwen.topK, qwen.topP, qwen.repetitionPenalty], [0.7, 20, 0.8, 1.05]);
    assert(
      qwen.note!.endsWith(
        "generation_config.json: temperature 0.7, top-k 20, top-p 0.8, repetition penalty 1.05 " +
          "(the flags override it; --temperature 0 is greedy)",
      ),
      qwen.note!,
    );
    const flags = await samplingOf(dir, { temperature: 0, "top-k": 3, "repetition-penalty": 1 });
    assertEquals([flags.temperature, flags.topK, flags.topP, flags.repetitionPenalty], [0, 3, 0.8, 1]);
    // greedy decoding leaves the sampling flags unused, and says so
    assert(flags.note!.endsWith("\n--top-k applies when sampling: give --temperature above 0"), flags.note!);
    // sampling without settings takes transformers' defaults: temperature 1, top-k 50
    await write({ do_sample: true });
    const defaults = await samplingOf(dir, {});
    assertEquals([defaults.temperature, defaults.topK, defaults.topP], [1, 50, 1]);
    assert(defaults.note!.includes(": temperature 1, top-k 50 ("), defaults.note!);
    // --temperature turns sampling on: the file's top_k and top_p, else transformers' top-k 50
    await write({ top_k: 20, top_p: 0.9 });
    const warm = await samplingOf(dir, { temperature: 0.8 });
    assertEquals([warm.temperature, warm.topK, warm.topP], [0.8, 20, 0.9]);
    // min_p as transformers reads it (after top-k and top-p), and --min-p over it
    await write({ do_sample: true, min_p: 0.05 });
    const minP = await samplingOf(dir, {});
    assertEquals([minP.topK, minP.minP], [50, 0.05]);
    assert(minP.note!.includes("generation_config.json: min-p 0.05; "), minP.note!);
    assertEquals((await samplingOf(dir, { "min-p": 0.2 })).minP, 0.2);
    await write({ min_p: 1.5 });
    await assertRejects(() => samplingOf(dir, {}), Error, '"min_p" must be a number in [0, 1], got 1.5');
    await Deno.remove(`${dir}/generation_config.json`);
    const bare = await samplingOf(dir, { temperature: 0.8 });
    assertEquals([bare.topK, bare.topP, bare.note], [
      50,
      1,
      "transformers' defaults: top-k 50 (the flags override it)",
    ]);
    // without do_sample, greedy: a temperature is ignored, a repetition penalty is not
    await write({ temperature: 0.6, repetition_penalty: 1.2 });
    const greedy = await samplingOf(dir, {});
    assertEquals([greedy.temperature, greedy.topK, greedy.repetitionPenalty], [0, 0, 1.2]);
    assert(greedy.note!.endsWith(": repetition penalty 1.2 (the flags override it)"), greedy.note!);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("predict takes generation_config.json's sampling settings, says so, and samples as generate does", async () => {
  const gpu = await getGpu();
  const dir = await tempModelDir(fixtureModel("gpt2-brown"));
  try {
    await Deno.writeTextFile(
      `${dir}/generation_config.json`,
      JSON.stringify({ do_sample: true, temperature: 0.8, top_k: 20, repetition_penalty: 1.3 }),
    );
    const r = await runCli([
      "predict",
      "--model",
      dir,
      "--text",
      "The jury",
      "--max-new-tokens",
      "6",
      "--json",
    ]);
    assertEquals(r.code, 0, r.err);
    assert(
      r.err.includes("generation_config.json: temperature 0.8, top-k 20, repetition penalty 1.3"),
      r.err,
    );
    const model = await loadModel(gpu, dir);
    const tokenizer = await loadModelTokenizer(model.config);
    const g = await generate(model, tokenizer, "The jury", {
      maxNewTokens: 6,
      temperature: 0.8,
      topK: 20,
      repetitionPenalty: 1.3,
      eosTokenIds: endTokenIds(model, tokenizer),
    });
    model.dispose();
    assertEquals(JSON.parse(r.out).completion, g.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("predict names an instruction it cannot ask by its file and line", async () => {
  await withTempDir("hartley_predict_where_", async (dir) => {
    const lines = [
      JSON.stringify({ prompt: "The jury", completion: " said" }),
      "",
      JSON.stringify({
        messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }],
      }),
    ];
    await Deno.writeTextFile(`${dir}/ask.jsonl`, lines.join("\n"));
    const r = await runCli(["predict", "--model", fixtureModel("gpt2"), "--data", `${dir}/ask.jsonl`]);
    assertEquals(r.code, 1, r.err);
    assert(r.err.includes(`${dir}/ask.jsonl:3: a conversation needs the model's chat template`), r.err);
  });
});
