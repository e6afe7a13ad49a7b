import { chatTemplate, loadChatTemplate } from "../lib/io/chat_template.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { loadModelTokenizer } from "../lib/models/load.ts";
import { DataError } from "../lib/train/data_error.ts";
import {
  type Instruction,
  instructionDataset,
  type InstructionDatasetOptions,
} from "../lib/train/instruct.ts";
import { EXAMPLES_PER_JOB, instructionDatasetOnWorkers } from "../lib/train/instruct_workers.ts";
import { canTokenizeOnWorkers, liveTokenizingWorkers } from "../lib/train/tokenizing_pool.ts";
import { Tokenizer } from "../lib/io/tokenizer.ts";
import { ChatTemplateError } from "../lib/io/chat_template.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";

const CHATML =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
/** Qwen3's template: conversations it does not render turn by turn are learnt on their last turn. */
const QWEN3 = await Deno.readTextFile(new URL("./fixtures/chat_templates/qwen3.jinja", import.meta.url));
/** ChatML whose assistant turns are {% generation %} blocks. */
const GENERATING = CHATML.replace(
  "{{ m['content'] }}<|im_end|>",
  "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}" +
    "{% else %}{{ m['content'] }}<|im_end|>{% endif %}",
);

const tokenizerOf = async (name: string) => loadModelTokenizer(await loadHfConfig(fixtureModel(name)));

const WORDS = "the jury said it was over and the city went home after a long day é ü 日本".split(" ");
const words = (seed: number, n: number) =>
  Array.from({ length: n }, (_, i) => WORDS[(i * 7 + seed * 3) % WORDS.length]).join(" ");

/** Prompt/completion records and conversations of 2, 4 or 6 turns, some with a reasoning block, mixed. */
function examples(count: number): Instruction[] {
  return Array.from({ length: count }, (_, k): Instruction => {
    if (k % 5 === 0) return { prompt: words(k, 3 + k % 7), completion: " " + words(k + 1, 2 + k % 5) };
    const turns = 2 * (1 + k % 3);
    const messages = Array.from({ length: turns }, (_, i) => ({
      role: i % 2 ? "assistant" : "user",
      content: (i % 2 && k % 4 === 1 ? "<think>\nhm\n</think>\n\n" : "") + words(k + i, 2 + (k + i) % 9),
    }));
    return { messages, completionFrom: 0 };
  });
}

/** The rows and counts of a result, as plain values. */
function plain(made: Awaited<ReturnType<typeof instructionDatasetOnWorkers>>) {
  const { dataset, ...counts } = made;
  const rows = Array.from({ length: dataset.size }, (_, i) => dataset.row(i));
  return {
    counts,
    padId: dataset.padId,
    rows: rows.map((r) => [Array.from(r.ids), Array.from(r.label as Int32Array)]),
  };
}

Deno.test("instructionDatasetOnWorkers: the rows, counts and progress of instructionDataset, tokenized on workers", async () => {
  const data = examples(EXAMPLES_PER_JOB * 4 + 7); // chunks, the last short
  for (const model of ["gpt2", "llama"]) {
    const tokenizer = await tokenizerOf(model);
    for (const [name, jinja] of [["chatml", CHATML], ["qwen3", QWEN3], ["generation", GENERATING]]) {
      for (const lossOn of ["completion", "all"] as const) {
        const opts: InstructionDatasetOptions = {
          seqLen: 40, // some rows cut, some examples left out
          template: chatTemplate(jinja, name, { bos_token: "<s>" }),
          lossOn,
          source: "data.jsonl",
        };
        const at = `${model}, ${name}, ${lossOn}`;
        const progress: number[] = [];
        const pooled = await instructionDatasetOnWorkers(data, tokenizer, {
          ...opts,
          onProgress: (done, total) => {
            assertEquals(total, data.length, at);
            progress.push(done);
          },
        });
        assert(liveTokenizingWorkers() >= 1, `${at}: tokenized on workers`);
        const want = plain(instructionDataset(data, tokenizer, opts));
        assertEquals(plain(pooled), want, at);
        assertEquals(progress.at(-1), data.length, at);
        assert(progress.every((n, i) => i === 0 || n > progress[i - 1]), `${at}: progress only up`);
        if (name === "qwen3" && lossOn === "completion") assert(want.counts.lastTurnOnly > 0, at);
        if (lossOn === "completion") assert(want.counts.truncated > 0 && want.counts.dropped > 0, at);
      }
    }
  }
});

Deno.test("instructionDatasetOnWorkers: the first broken example in input order is thrown, as its class", async () => {
  const tokenizer = await tokenizerOf("gpt2");
  const texts = examples(EXAMPLES_PER_JOB * 6).filter((ex) => "prompt" in ex);
  const data = [...texts, ...texts, ...texts, ...texts, ...texts].slice(0, EXAMPLES_PER_JOB * 6);
  // two conversations without a template, in different chunks: the later chunk is short, done first
  const chat: Instruction = { messages: [{ role: "user", content: "hi" }], completionFrom: 0 };
  const broken = [EXAMPLES_PER_JOB + 5, EXAMPLES_PER_JOB * 4 + 3];
  const withBroken = data.map((ex, k) => broken.includes(k) ? chat : ex);
  const error = await assertRejects(
    () => instructionDatasetOnWorkers(withBroken, tokenizer, { seqLen: 64, source: "data.jsonl" }),
    DataError,
  );
  assertEquals(
    error.message,
    `data.jsonl: example ${
      broken[0] + 1
    }: a conversation needs the model's chat template (tokenizer_config.json "chat_template", or chat_template.jinja), and the model directory has none`,
  );
  // a template's own error: its class and message
  const failing = chatTemplate(
    CHATML.replace("{{ m['content'] }}", "{{ raise_exception('no ' + m['content']) }}"),
    "failing.jinja",
  );
  const failed = await assertRejects(
    () => instructionDatasetOnWorkers(examples(40), tokenizer, { seqLen: 64, template: failing }),
    ChatTemplateError,
  );
  assert(failed.message.startsWith("failing.jinja: the chat template failed"), failed.message);
});

Deno.test("instructionDatasetOnWorkers: a model directory's template, and one that refuses every render", async () => {
  const tokenizer = await tokenizerOf("gpt2");
  const dir = await tempModelDir(fixtureModel("gpt2"));
  try {
    await Deno.writeTextFile(`${dir}/chat_template.jinja`, "{{ bos_token }}" + CHATML);
    const template = await loadChatTemplate(dir, { extra: [1, "two"] }, tokenizer);
    const data = examples(EXAMPLES_PER_JOB + 1), opts = { seqLen: 64, template };
    assertEquals(
      plain(await instructionDatasetOnWorkers(data, tokenizer, opts)),
      plain(instructionDataset(data, tokenizer, opts)),
    );
    // tokenizer_config.json's template list without a default: refused as in this thread
    await Deno.remove(`${dir}/chat_template.jinja`);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ chat_template: [{ name: "tool_use", template: CHATML }] }),
    );
    const refusing = await loadChatTemplate(dir, {}, tokenizer);
    const want = assertThrows(() => instructionDataset(data, tokenizer, { ...opts, template: refusing }));
    const got = await assertRejects(() =>
      instructionDatasetOnWorkers(data, tokenizer, { ...opts, template: refusing })
    );
    assertEquals([got.name, got.message], [want.name, want.message]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("instructionDatasetOnWorkers: a template whose context no worker can be given (a function) is tokenized here", async () => {
  const tokenizer = await tokenizerOf("gpt2");
  const template = chatTemplate("{{ today() }}" + CHATML, "dated", { today: () => "2026-11-28" });
  const data = examples(EXAMPLES_PER_JOB + 3), opts = { seqLen: 64, template };
  assertEquals(
    plain(await instructionDatasetOnWorkers(data, tokenizer, opts)),
    plain(instructionDataset(data, tokenizer, opts)),
  );
});

Deno.test("instructionDatasetOnWorkers: a tokenizer changed after loading (an instance's encode, a subclass) is used here", async () => {
  const loaded = await tokenizerOf("gpt2");
  assert(canTokenizeOnWorkers(loaded), "a tokenizer as loaded goes to the workers");
  // ids no worker's copy would give: each text's with an end-of-text token after them
  const eos = loaded.special.eos ?? 0;
  let calls = 0;
  const replaced = await tokenizerOf("gpt2");
  const own = replaced.encode.bind(replaced);
  replaced.encode = (text, opts) => {
    calls++;
    return [...own(text, opts), eos];
  };
  class Marking extends Tokenizer {
    override encode(text: string, opts?: Parameters<Tokenizer["encode"]>[1]): number[] {
      calls++;
      return [...super.encode(text, opts), eos];
    }
  }
  const subclassed: Tokenizer = Object.setPrototypeOf(await tokenizerOf("gpt2"), Marking.prototype);
  const data = examples(EXAMPLES_PER_JOB + 3),
    opts = { seqLen: 64, template: chatTemplate(CHATML, "chatml") };
  const unchanged = JSON.stringify(plain(instructionDataset(data, loaded, opts)));
  for (const tokenizer of [replaced, subclassed]) {
    assert(!canTokenizeOnWorkers(tokenizer), "a changed tokenizer stays in this thread");
    const before = calls;
    const pooled = plain(await instructionDatasetOnWorkers(data, tokenizer, opts));
    assert(calls > before, "its encode ran");
    assertEquals(pooled, plain(instructionDataset(data, tokenizer, opts)));
    assert(JSON.stringify(pooled) !== unchanged, "its ids, not the loaded tokenizer's");
  }
});
