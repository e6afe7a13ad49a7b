/**
 * Instruction data: TRL's prompt/completion and conversation records read and tokenized, the
 * loss on the completions (the assistant turns, their headers excluded) alone; chat templates
 * read from a model directory; and a causal LM fine-tuned on such a file from the CLI.
 */
import { join } from "node:path";
import {
  type ChatMessage,
  type ChatTemplate,
  chatTemplate,
  ChatTemplateError,
  loadChatTemplate,
} from "../lib/io/chat_template.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { generate } from "../lib/infer/generate.ts";
import {
  type Instruction,
  instructionDataset,
  instructionQuery,
  readInstructions,
  tokenizeInstruction,
} from "../lib/train/instruct.ts";
import { loadTokenizer, type Tokenizer } from "../lib/io/tokenizer.ts";
import { recordFieldNames } from "../lib/train/readers.ts";
import { DataError } from "../lib/train/data_error.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";
import { runCli } from "./train_helpers.ts";
import { chooseTask } from "../lib/cli/task.ts";
import { templateKwargs } from "../lib/cli/args.ts";
import { withTempDir } from "./temp_dir.ts";

const CHATML =
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/** Llama 3's chat template: each turn's content trimmed, then <|eot_id|>. */
const LLAMA3 = chatTemplate(
  "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n" +
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}" +
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
  "llama3",
  { bos_token: "<|begin_of_text|>" },
);

async function tokenizerOf(name: string) {
  return await loadModelTokenizer(await loadHfConfig(fixtureModel(name)));
}

/** The text of the learnt tokens (special tokens kept). */
function learnt(tok: Awaited<ReturnType<typeof tokenizerOf>>, ids: Int32Array, trained: Uint8Array): string {
  return tok.decode(Array.from(ids).filter((_, i) => trained[i]), { skipSpecialTokens: false });
}

/** A temporary copy of fixture model `name` with the ChatML template in its tokenizer_config.json. */
async function chatModelDir(name: string): Promise<string> {
  const dir = await tempModelDir(fixtureModel(name));
  await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: CHATML }));
  return dir;
}

Deno.test("readInstructions: prompt/completion texts, conversations, conversational prompt/completion; errors name the line", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    const file = join(dir, "sft.jsonl");
    const rows = [
      { prompt: "Q: sky? A:", completion: " blue" },
      { messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] },
      { prompt: [{ role: "user", content: "2+2?" }], completion: [{ role: "assistant", content: "4" }] },
    ];
    await Deno.writeTextFile(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    assertEquals(await readInstructions(file), [
      { prompt: "Q: sky? A:", completion: " blue", source: `${file}:1` },
      { messages: rows[1].messages!, completionFrom: 0, source: `${file}:2` },
      {
        messages: [{ role: "user", content: "2+2?" }, { role: "assistant", content: "4" }],
        completionFrom: 1,
        source: `${file}:3`,
      },
    ]);
    await Deno.writeTextFile(file, '{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n');
    await assertRejects(() => readInstructions(file), DataError, "sft.jsonl:2: expected");
    await Deno.writeTextFile(file, '{"messages": [{"role": "user"}]}\n');
    await assertRejects(
      () => readInstructions(file),
      DataError,
      'sft.jsonl:1: messages[0] must be {"role": text',
    );
    await Deno.writeTextFile(file, '{"text": "plain"}\n');
    await assertRejects(() => readInstructions(file), DataError, "the fields are text");
  });
});

Deno.test("readInstructions: Parquet splits as TRL's datasets hold them (a messages column of structs, prompt/completion)", async () => {
  const data = new URL("./fixtures/data/", import.meta.url).pathname;
  const chats = await readInstructions(`${data}chat.parquet`);
  assertEquals(chats.length, 2);
  assertEquals(chats[1], {
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Grass?" },
      { role: "assistant", content: "Green." },
      { role: "user", content: "Snow?" },
      { role: "assistant", content: "White." },
    ],
    completionFrom: 0,
    source: `${data}chat.parquet:2`,
  });
  assertEquals(await readInstructions(`${data}prompt_completion.parquet`), [
    { prompt: "The opposite of hot is", completion: " cold", source: `${data}prompt_completion.parquet:1` },
    { prompt: "2 + 2 =", completion: " 4", source: `${data}prompt_completion.parquet:2` },
  ]);
});

Deno.test("tokenizeInstruction: prompt + completion + EOS, the completion's tokens learnt (GPT-2 and LLaMA tokenizers)", async () => {
  for (const name of ["gpt2", "llama"]) {
    const tok = await tokenizerOf(name);
    const ex = { prompt: "The jury said", completion: " that the city was fine" };
    const { ids, trained } = tokenizeInstruction(ex, tok);
    const whole = tok.encode(ex.prompt + ex.completion), prompt = tok.encode(ex.prompt);
    assertEquals(Array.from(ids), [...whole, tok.special.eos!], name);
    assertEquals(
      Array.from(trained),
      [...prompt.map(() => 0), ...whole.slice(prompt.length).map(() => 1), 1],
      name,
    );
    assertEquals(tok.decode(Array.from(ids).filter((_, i) => trained[i])).trim(), ex.completion.trim(), name);
    const all = tokenizeInstruction(ex, tok, { lossOn: "all" });
    assert(all.trained.every((v) => v === 1), name);
    // a token across the two texts ("Answer: " + "There": "ĠThe" / "▁The") is the completion's first
    const joined = { prompt: "Question: where is it? Answer: ", completion: "There" };
    const j = tokenizeInstruction(joined, tok);
    const learnt = tok.decode(Array.from(j.ids).filter((_, i) => j.trained[i]));
    assert(learnt.trim().startsWith("There"), `${name}: ${JSON.stringify(learnt)}`);
  }
});

Deno.test("instructionQuery: a text prompt's tokens as training saw them, none the tokenizer appends after it", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    // LLaMA's tokenizer with a post-processor that ends every text with </s>
    const json = JSON.parse(await Deno.readTextFile(join(fixtureModel("llama"), "tokenizer.json")));
    const special = (id: string) => ({ SpecialToken: { id, type_id: 0 } });
    json.post_processor = {
      type: "TemplateProcessing",
      single: [special("<s>"), { Sequence: { id: "A", type_id: 0 } }, special("</s>")],
      pair: [special("<s>"), { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 0 } }],
      special_tokens: {
        "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] },
        "</s>": { id: "</s>", ids: [2], tokens: ["</s>"] },
      },
    };
    await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(json));
    const tok = await loadTokenizer(join(dir, "tokenizer.json"), await loadHfConfig(fixtureModel("llama")));
    const ex = { prompt: "Q: hi A:", completion: " yes" };
    const { ids, trained } = tokenizeInstruction(ex, tok);
    const asked = instructionQuery(ex, tok).ids;
    assertEquals(asked, Array.from(ids).slice(0, trained.indexOf(1)), "the prompt training saw");
    assertEquals([asked[0], asked.includes(2)], [1, false]);
  });
});

Deno.test("tokenizeInstruction: a conversation's assistant turns learnt through the chat template, headers not", async () => {
  const tok = await tokenizerOf("gpt2");
  const template = chatTemplate(CHATML, "test");
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Sky colour?" },
    { role: "assistant", content: "Blue." },
    { role: "user", content: "Grass?" },
    { role: "assistant", content: "Green." },
  ];
  const chat: Instruction = { messages, completionFrom: 0 };
  const { ids, trained } = tokenizeInstruction(chat, tok, { template });
  assertEquals(Array.from(ids), tok.encode(template.render(messages), { addSpecialTokens: false }));
  assertEquals(learnt(tok, ids, trained), "Blue.<|im_end|>\nGreen.<|im_end|>\n");
  // a conversational prompt/completion: the prompt's assistant turn is context, not learnt
  const { ids: ids2, trained: t2 } = tokenizeInstruction({ messages, completionFrom: 3 }, tok, { template });
  assertEquals(learnt(tok, ids2, t2), "Green.<|im_end|>\n");
  assertThrows(
    () => tokenizeInstruction(chat, tok, { where: "sft.jsonl: example 4" }),
    "sft.jsonl: example 4: a conversation needs the model's chat template",
  );
  // a template that writes something after the last turn only: the turns cannot be found
  const closing = chatTemplate(
    "{% for m in messages %}{{ m.content }}|{% endfor %}{{ messages | length }}",
    "closing",
  );
  assertThrows(
    () => tokenizeInstruction(chat, tok, { template: closing }),
    'train on every token instead (--loss-on all, or lossOn "all")',
  );
  assert(tokenizeInstruction(chat, tok, { template: closing, lossOn: "all" }).trained.every((v) => v === 1));
  // Phi-3 closes a conversation rendered without the generation prompt with its EOS, which an
  // earlier turn does not have in the whole text; Qwen3 writes an empty <think> into the last turn
  // alone. Each turn is what follows its generation prompt through its end-of-turn token, as in the
  // whole text (the last turn's <think> included, as the model writes it after the prompt).
  const phi3 = chatTemplate(
    "{% for m in messages %}{{ '[' + m.role + ']\n' + m.content + '[end]\n' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '[assistant]\n' }}{% else %}{{ eos_token }}{% endif %}",
    "phi3",
    { eos_token: "<|endoftext|>" },
  );
  assertEquals(
    learnt(tok, ...pair(tokenizeInstruction(chat, tok, { template: phi3 }))),
    "Blue.[end]\nGreen.[end]\n<|endoftext|>",
  );
  const qwen3 = chatTemplate(
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and loop.last %}" +
      "<think>\n\n</think>\n\n{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}" +
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "qwen3",
  );
  assertEquals(
    learnt(tok, ...pair(tokenizeInstruction(chat, tok, { template: qwen3 }))),
    "Blue.<|im_end|>\n<think>\n\n</think>\n\nGreen.<|im_end|>\n",
  );
  // an answer that also occurs in the closing markup ("d", "e", "end" in <|im_end|>; "d", "e", "eot" in
  // <|eot_id|>; "n" in Qwen3's <think>) is learnt with its end-of-turn token
  const answers: [ChatTemplate, string, string, string][] = [
    [template, "d", "d", "<|im_end|>\n"],
    [template, "e", "e", "<|im_end|>\n"],
    [template, "end", "end", "<|im_end|>\n"],
    [template, "c", "c", "<|im_end|>\n"],
    [qwen3, "n", "<think>\n\n</think>\n\nn", "<|im_end|>\n"],
    [LLAMA3, "d", "d", "<|eot_id|>"],
    [LLAMA3, "e", "e", "<|eot_id|>"],
    [LLAMA3, "eot", "eot", "<|eot_id|>"],
    [LLAMA3, " t ", "t", "<|eot_id|>"],
  ];
  for (const [t, answer, written, closer] of answers) {
    assertEquals(learntAnswer(tok, t, answer), written + closer, `${t.source}: ${JSON.stringify(answer)}`);
  }
});

/** The learnt text of a question answered `answer` under `template`. */
function learntAnswer(tok: Awaited<ReturnType<typeof tokenizerOf>>, template: ChatTemplate, answer: string) {
  const messages = [{ role: "user", content: "Pick a, b, c or d." }, { role: "assistant", content: answer }];
  return learnt(tok, ...pair(tokenizeInstruction({ messages, completionFrom: 0 }, tok, { template })));
}

Deno.test("tokenizeInstruction: an empty or blank assistant turn learns its end-of-turn token, as TRL does", async () => {
  const tok = await tokenizerOf("gpt2");
  const chatml = chatTemplate(CHATML, "chatml");
  assertEquals(learntAnswer(tok, chatml, ""), "<|im_end|>\n");
  assertEquals(learntAnswer(tok, chatml, "  "), "  <|im_end|>\n");
  assertEquals(learntAnswer(tok, LLAMA3, ""), "<|eot_id|>");
  assertEquals(learntAnswer(tok, LLAMA3, " \n"), "<|eot_id|>");
});

/** An InstructionTokens as the (ids, trained) pair `learnt` takes. */
function pair(t: { ids: Int32Array; trained: Uint8Array }): [Int32Array, Uint8Array] {
  return [t.ids, t.trained];
}

/** Templates with {% generation %} blocks, rendered by Python's Jinja2 in python_expected.json. */
const GENERATION = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/chat_templates/python_expected.json", import.meta.url)),
).generation as { name: string; template: string; messages: ChatMessage[] }[];

Deno.test("tokenizeInstruction: a template's {% generation %} blocks say what is learnt, as TRL's assistant_only_loss takes them", async () => {
  const tok = await tokenizerOf("gpt2");
  const [chatml, , header] = GENERATION.map((g) => chatTemplate(g.template, g.name));
  const messages = GENERATION[0].messages, chat: Instruction = { messages, completionFrom: 0 };
  // the block holds the content and <|im_end|>, not the newline after it, which the turn-by-turn
  // reading (a template without blocks) learns
  assertEquals(
    learnt(tok, ...pair(tokenizeInstruction(chat, tok, { template: chatml }))),
    "Blue.<|im_end|>Green é.<|im_end|>",
  );
  assertEquals(
    learnt(tok, ...pair(tokenizeInstruction(chat, tok, { template: chatTemplate(CHATML, "chatml") }))),
    "Blue.<|im_end|>\nGreen é.<|im_end|>\n",
  );
  // a header inside the block is learnt
  assertEquals(
    learnt(tok, ...pair(tokenizeInstruction(chat, tok, { template: header }))),
    "<|im_start|>assistant\nBlue.<|im_end|>\n<|im_start|>assistant\nGreen é.<|im_end|>\n",
  );
  // a conversational prompt/completion: the blocks after the prompt's tokens alone (TRL's completion mask)
  const completion = tokenizeInstruction({ messages, completionFrom: 3 }, tok, { template: chatml });
  assertEquals(learnt(tok, ...pair(completion)), "Green é.<|im_end|>");
  assertEquals(completion.unlearntTurns, 0);
  assert(tokenizeInstruction(chat, tok, { template: chatml, lossOn: "all" }).trained.every((v) => v === 1));
});

Deno.test("tokenizeInstruction: a token across a {% generation %} block's first or last character is learnt, as transformers' char_to_token takes it", async () => {
  const tok = await tokenizerOf("gpt2");
  const template = chatTemplate(
    "{% for m in messages %}{% if m.role == 'user' %}Q: {{ m.content }}\n{% else %}" +
      "A: {% generation %}{{ m.content }}{% endgeneration %}ne\n{% endif %}{% endfor %}",
    "split",
  );
  const messages = [
    { role: "user", content: "Why?" },
    { role: "assistant", content: "So fi" },
    { role: "user", content: "And?" },
    { role: "assistant", content: "Why fi" },
  ];
  const { ids, trained } = tokenizeInstruction({ messages, completionFrom: 0 }, tok, { template });
  // " S" and " W" begin before the blocks, "in" ends after them
  assertEquals(learnt(tok, ids, trained), " So fin Why fin");
  // the tokens holding a character of each range, as transformers' assistant mask has them
  const { text, generation } = template.renderGeneration(messages);
  const ends: number[] = [];
  for (const id of ids) ends.push((ends.at(-1) ?? 0) + tok.decode([id], { skipSpecialTokens: false }).length);
  assertEquals(ends.at(-1), text.length);
  const tokenAt = (c: number) => ends.findIndex((end) => end > c);
  const expected = new Uint8Array(ids.length);
  for (const [from, to] of generation!) expected.fill(1, tokenAt(from), tokenAt(to - 1) + 1);
  assertEquals(Array.from(trained), Array.from(expected));
});

Deno.test("tokenizeInstruction: a SentencePiece word that joins the newline before it is learnt whole (LLaMA's tokenizer)", async () => {
  const tok = await tokenizerOf("llama");
  const template = chatTemplate(CHATML, "test");
  const messages = [{ role: "user", content: "say no" }, { role: "assistant", content: "no" }];
  const { ids, trained } = tokenizeInstruction({ messages, completionFrom: 0 }, tok, { template });
  // the prompt alone ends with a token for the newline, which the whole text joins to "no"
  const before = tok.encode(template.render(messages.slice(0, 1), true), { addSpecialTokens: false });
  assert(before.at(-1) !== ids[before.length - 1], "the boundary token differs");
  const first = trained.indexOf(1);
  assertEquals(first, before.length - 1);
  assertEquals(tok.decode([ids[first]]).trim(), "no");
  assert(!learnt(tok, ids, trained).includes("assistant"), learnt(tok, ids, trained));
});

/** Qwen3's official chat template (tests/fixtures/chat_templates/README.md). */
const QWEN3 = chatTemplate(
  await Deno.readTextFile(new URL("./fixtures/chat_templates/qwen3.jinja", import.meta.url)),
  "qwen3",
);

/** Rows of `file` as JSONL. */
async function writeRows(file: string, rows: unknown[]): Promise<string> {
  await Deno.writeTextFile(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return file;
}

const TOOLS = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
const TOOL_CALL = { type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } };
/** TRL's conversational rows with tool calls, reasoning and template variables. */
const TOOL_ROWS = [
  {
    messages: [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: null, tool_calls: [TOOL_CALL] },
      { role: "tool", name: "get_weather", content: "22C" },
      { role: "assistant", content: "It is 22C." },
    ],
    tools: TOOLS,
  },
  {
    messages: [
      { role: "user", content: "2+2?" },
      { role: "assistant", reasoning_content: "2 plus 2 is 4.", content: "4" },
    ],
  },
  {
    messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello." }],
    chat_template_kwargs: { enable_thinking: false },
  },
];

Deno.test("readInstructions: every field of a message, the row's tools and chat_template_kwargs, ShareGPT's conversations", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    const sharegpt = {
      conversations: [{ from: "system", value: "Be brief." }, { from: "human", value: "Hi" }, {
        from: "gpt",
        value: "Hello.",
      }],
    };
    const file = await writeRows(join(dir, "tools.jsonl"), [...TOOL_ROWS, sharegpt]);
    assertEquals(await readInstructions(file), [
      { messages: TOOL_ROWS[0].messages, completionFrom: 0, tools: TOOLS, source: `${file}:1` },
      { messages: TOOL_ROWS[1].messages, completionFrom: 0, source: `${file}:2` },
      {
        messages: TOOL_ROWS[2].messages,
        completionFrom: 0,
        chatTemplateKwargs: { enable_thinking: false },
        source: `${file}:3`,
      },
      {
        messages: [
          { role: "system", content: "Be brief." },
          { role: "user", content: "Hi" },
          { role: "assistant", content: "Hello." },
        ],
        completionFrom: 0,
        source: `${file}:4`,
      },
    ]);
    const refused: [unknown, string][] = [
      [
        { messages: [{ role: "assistant" }] },
        'messages[0] must be {"role": text, "content": text or list of parts}',
      ],
      [{ messages: [{ role: "user", content: "a" }], tools: "get_weather" }, '"tools" must be a list'],
      [
        { messages: [{ role: "user", content: "a" }], chat_template_kwargs: [1] },
        '"chat_template_kwargs" must be',
      ],
      [{ conversations: [{ from: "human" }] }, "tools.jsonl:1: conversations[0] must be"],
    ];
    for (const [row, message] of refused) {
      await writeRows(file, [row]);
      await assertRejects(() => readInstructions(file), DataError, message);
    }
  });
});

Deno.test("tokenizeInstruction: tool calls, reasoning_content and a row's template variables through Qwen3's template, as TRL renders them", async () => {
  const tok = await tokenizerOf("gpt2");
  await withTempDir("hartley-instruct-", async (dir) => {
    const [tools, reasoning, noThinking] = await readInstructions(
      await writeRows(join(dir, "t.jsonl"), TOOL_ROWS),
    );
    const { ids, trained } = tokenizeInstruction(tools, tok, { template: QWEN3 });
    // the tools in the system turn and the call in the assistant's, as Python's Jinja2 renders them
    const rendered = await Deno.readTextFile(
      new URL("./fixtures/chat_templates/qwen3_tools_render.txt", import.meta.url),
    );
    assertEquals(Array.from(ids), tok.encode(rendered, { addSpecialTokens: false }));
    assertEquals(
      learnt(tok, ids, trained),
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
        "<think>\n\n</think>\n\nIt is 22C.<|im_end|>\n",
    );
    // the reasoning is learnt with the answer; with thinking off, the empty <think> is the prompt's
    assertEquals(
      learnt(tok, ...pair(tokenizeInstruction(reasoning, tok, { template: QWEN3 }))),
      "<think>\n2 plus 2 is 4.\n</think>\n\n4<|im_end|>\n",
    );
    assertEquals(
      learnt(tok, ...pair(tokenizeInstruction(noThinking, tok, { template: QWEN3 }))),
      "Hello.<|im_end|>\n",
    );
    const asked = tok.decode(instructionQuery(noThinking, tok, QWEN3).ids, { skipSpecialTokens: false });
    assert(asked.endsWith("<|im_start|>assistant\n<think>\n\n</think>\n\n"), asked);
    // an answer's indent is kept (Qwen3 lstrips "\n" alone)
    const code = [{ role: "user", content: "Indent it" }, { role: "assistant", content: "    return x" }];
    assertEquals(
      learnt(
        tok,
        ...pair(tokenizeInstruction({ messages: code, completionFrom: 0 }, tok, { template: QWEN3 })),
      ),
      "<think>\n\n</think>\n\n    return x<|im_end|>\n",
    );
  });
});

Deno.test("tokenizeInstruction: reasoning in the content, which Qwen3 moves out, learns the last assistant turn after the generation prompt, as TRL's prompt/completion", async () => {
  const tok = await tokenizerOf("gpt2");
  const one: Instruction = {
    messages: [{ role: "user", content: "Hi" }, {
      role: "assistant",
      content: "<think>\nLet me think.\n</think>\n\nHello.",
    }],
    completionFrom: 0,
  };
  const single = tokenizeInstruction(one, tok, { template: QWEN3 });
  assertEquals(
    [learnt(tok, single.ids, single.trained), single.unlearntTurns],
    ["<think>\nLet me think.\n</think>\n\nHello.<|im_end|>\n", 0],
  );
  // Qwen3 drops an earlier turn's reasoning: that turn is not learnt, and counted
  const two: Instruction = {
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "<think>\nA\n</think>\n\nHello." },
      { role: "user", content: "Again" },
      { role: "assistant", content: "<think>\nB\n</think>\n\nBye." },
    ],
    completionFrom: 0,
  };
  const both = tokenizeInstruction(two, tok, { template: QWEN3 });
  assertEquals([learnt(tok, both.ids, both.trained), both.unlearntTurns], [
    "<think>\nB\n</think>\n\nBye.<|im_end|>\n",
    1,
  ]);
  const made = instructionDataset([one, two, two], tok, { seqLen: 256, template: QWEN3 });
  assertEquals([made.dataset.size, made.lastTurnOnly], [3, 2]);
});

Deno.test("instructionDataset: conversations without an assistant turn are named by their roles, not sent to --seq-len", async () => {
  const tok = await tokenizerOf("gpt2");
  const template = chatTemplate(CHATML, "chatml");
  const chat = (...roles: string[]): Instruction => ({
    messages: roles.map((role) => ({ role, content: "Hi" })),
    completionFrom: 0,
  });
  assertThrows(
    () =>
      instructionDataset([chat("human", "gpt"), chat("system", "user")], tok, {
        seqLen: 64,
        template,
        source: "s.jsonl",
      }),
    's.jsonl: no conversation has a turn with the role "assistant" to learn (their roles: human, gpt, system, user); ' +
      'name the answers\' role "assistant", or train on every token (--loss-on all, or lossOn "all")',
  );
  const some = instructionDataset([chat("user", "assistant"), chat("system", "user")], tok, {
    seqLen: 64,
    template,
  });
  assertEquals([some.dataset.size, some.dropped, some.noAssistant], [1, 1, 1]);
  // every token of them is learnt with --loss-on all
  const all = instructionDataset([chat("human", "gpt")], tok, { seqLen: 64, template, lossOn: "all" });
  assertEquals([all.dataset.size, all.noAssistant], [1, 0]);
});

Deno.test("instructionDataset: next-token labels on learnt tokens, rows cut to seqLen, prompts that fill it left out", async () => {
  const tok = await tokenizerOf("gpt2");
  const examples = [
    { prompt: "The jury", completion: " said" },
    { prompt: "The jury said that the city of Atlanta was", completion: " fine" },
  ];
  const prompt0 = tok.encode("The jury").length, long = tok.encode(examples[1].prompt).length;
  const { dataset, dropped, truncated } = instructionDataset(examples, tok, { seqLen: long - 1 });
  assertEquals([dataset.size, dropped, truncated], [1, 1, 0]);
  const calls: number[][] = [];
  const many = Array.from({ length: 600 }, () => examples[0]);
  instructionDataset(many, tok, { seqLen: 32, onProgress: (done, total) => void calls.push([done, total]) });
  assertEquals(calls, [[256, 600], [512, 600], [600, 600]]);
  const cut = instructionDataset([examples[0]], tok, { seqLen: prompt0 + 1 });
  assertEquals([cut.dataset.size, cut.truncated, cut.dataset.row(0).ids.length], [1, 1, prompt0 + 1]);
  const row = dataset.row(0), ids = Array.from(row.ids);
  const expected = ids.map((_, t) => (t + 1 < ids.length && t + 1 >= prompt0 ? ids[t + 1] : -100));
  assertEquals(Array.from(row.label as Int32Array), expected);
  assertEquals(ids[ids.length - 1], tok.special.eos);
  assertThrows(
    () => instructionDataset([examples[1]], tok, { seqLen: 4, source: "sft.jsonl" }),
    "sft.jsonl: no example has a completion token within 4 tokens (raise --seq-len, or seqLen; or shorten the prompts)",
  );
});

Deno.test("instructionDataset: an example read from a file is named by its file and line, not its place in a split", async () => {
  const tok = await tokenizerOf("gpt2");
  await withTempDir("hartley-instruct-", async (dir) => {
    const file = join(dir, "sft.jsonl");
    const chat = { messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] };
    const text = { prompt: "Q:", completion: " A" };
    // line 3 is blank
    await Deno.writeTextFile(file, [text, text, "", chat].map((r) => r && JSON.stringify(r)).join("\n"));
    const held = (await readInstructions(file)).slice(1);
    assertThrows(
      () => instructionDataset(held, tok, { seqLen: 32, source: "sft.jsonl (held out)" }),
      `${file}:4: a conversation needs the model's chat template`,
    );
    // examples made in code: by their number
    assertThrows(
      () => instructionDataset([text, { ...chat, completionFrom: 0 }], tok, { seqLen: 32, source: "mine" }),
      "mine: example 2: a conversation needs the model's chat template",
    );
  });
});

Deno.test("loadChatTemplate: tokenizer_config.json's template (text or named list) or chat_template.jinja, with its special tokens", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    assertEquals(await loadChatTemplate(dir), null);
    const uses = "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}";
    await Deno.writeTextFile(join(dir, "chat_template.jinja"), uses);
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ bos_token: { content: "<s>" }, eos_token: "</s>" }),
    );
    const m = [{ role: "user", content: "hi" }];
    assertEquals((await loadChatTemplate(dir))!.render(m), "<s>hi</s>");
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({
        eos_token: "E",
        chat_template: [{ name: "tool_use", template: "T" }, { name: "default", template: "C" + uses }],
      }),
    );
    // as transformers: the .jinja file wins over the config's entry
    assertEquals((await loadChatTemplate(dir))!.source, join(dir, "chat_template.jinja"));
    assertEquals((await loadChatTemplate(dir))!.render(m), "hiE");
    await Deno.remove(join(dir, "chat_template.jinja"));
    assertEquals((await loadChatTemplate(dir))!.render(m), "ChiE");
    // tools and documents are None, as transformers renders them when none are given
    const tools = "{% if tools is not none %}{% for t in tools %}{{ t }}{% endfor %}{% endif %}" +
      "{% if documents is none %}{{ messages[0].content }}{% endif %}";
    assertEquals(chatTemplate(tools, "t").render(m), "hi");
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ chat_template: "{% if %}" }),
    );
    await assertRejects(
      () => loadChatTemplate(dir),
      ChatTemplateError,
      "tokenizer_config.json: the chat template does not parse",
    );
    const refusing = chatTemplate("{{ raise_exception('roles must alternate') }}", "t");
    assertThrows(() => refusing.render(m), "roles must alternate");
    // variables besides the messages, as apply_chat_template's kwargs (Qwen3's enable_thinking)
    const thinking =
      "{{ messages[0].content }}{% if add_generation_prompt %}>{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}{% endif %}";
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: thinking }));
    assertEquals((await loadChatTemplate(dir))!.render(m, true), "hi>");
    assertEquals(
      (await loadChatTemplate(dir, { enable_thinking: false }))!.render(m, true),
      "hi><think></think>",
    );
    // special tokens tokenizer_config.json leaves out: special_tokens_map.json's, else the tokenizer's
    const mistral =
      "{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{{ eos_token }}{% endfor %}";
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: mistral }));
    assertEquals((await loadChatTemplate(dir))!.render(m), "[INST] hi [/INST]");
    const llama = await loadModelTokenizer(await loadHfConfig(fixtureModel("llama")));
    assertEquals((await loadChatTemplate(dir, {}, llama))!.render(m), "<s>[INST] hi [/INST]</s>");
    await Deno.writeTextFile(
      join(dir, "special_tokens_map.json"),
      JSON.stringify({ bos_token: "B", eos_token: { content: "E" } }),
    );
    assertEquals((await loadChatTemplate(dir, {}, llama))!.render(m), "B[INST] hi [/INST]E");
    assertEquals(templateKwargs('{"enable_thinking": false}'), { enable_thinking: false });
    assertEquals(templateKwargs(undefined), {});
    assertThrows(() => templateKwargs("[1]"), "--template-kwargs: expected a JSON object of variables");
    assertThrows(() => templateKwargs("{x"), "--template-kwargs: not JSON");
  });
});

Deno.test("train and eval on conversations give the chat template --template-kwargs, as predict and chat do", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    const model = await tempModelDir(fixtureModel("gpt2-brown"));
    try {
      const template = "{% if ok is not defined %}{{ raise_exception('ok is not defined') }}{% endif %}" +
        CHATML;
      await Deno.writeTextFile(
        join(model, "tokenizer_config.json"),
        JSON.stringify({ chat_template: template }),
      );
      const data = join(dir, "chat.jsonl");
      const chat = {
        messages: [{ role: "user", content: "Colour?" }, { role: "assistant", content: "red" }],
      };
      await Deno.writeTextFile(data, Array.from({ length: 4 }, () => JSON.stringify(chat)).join("\n"));
      const args = ["--model", model, "--data", data, "--seq-len", "96", "--batch-size", "2"];
      const without = await runCli(["eval", ...args]);
      assertEquals(without.code, 1, without.err);
      assert(without.err.includes("ok is not defined"), without.err);
      const kwargs = ["--template-kwargs", '{"ok": true}'];
      assertEquals((await runCli(["eval", ...args, ...kwargs])).code, 0);
      const train = await runCli([
        "train",
        ...args,
        ...kwargs,
        "--steps",
        "1",
        "--out",
        join(dir, "run"),
        "--quiet",
      ]);
      assertEquals(train.code, 0, train.err);
    } finally {
      await Deno.remove(model, { recursive: true });
    }
  });
});

Deno.test("train a causal LM on prompt/completion and conversation files: the task, the loss on completions, eval", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    const model = await chatModelDir("gpt2-brown");
    try {
      const colours = ["red", "blue", "green", "white"];
      const texts = Array.from(
        { length: 16 },
        (_, i) => ({ prompt: `Colour ${i % 4}:`, completion: ` ${colours[i % 4]}` }),
      );
      const chats = texts.map((t) => ({
        messages: [{ role: "user", content: t.prompt }, { role: "assistant", content: t.completion.trim() }],
      }));
      for (const [name, rows] of [["sft.jsonl", texts], ["chat.jsonl", chats]] as const) {
        const data = join(dir, name);
        await Deno.writeTextFile(data, rows.map((r) => JSON.stringify(r)).join("\n"));
        const args = [
          "--model",
          model,
          "--data",
          data,
          "--batch-size",
          "8",
          "--seq-len",
          "96",
        ];
        const before = await runCli(["eval", ...args]);
        assertEquals(before.code, 0, before.err);
        const r = await runCli([
          "train",
          ...args,
          "--eval-data",
          data,
          "--method",
          "lora",
          "--lr",
          "3e-2",
          "--steps",
          "16",
          "--out",
          join(dir, `run-${name}`),
        ]);
        assertEquals(r.code, 0, r.err);
        assert(
          r.err.includes("16 instructions") && r.err.includes("the loss on the completions alone"),
          r.err,
        );
        const after = await runCli([
          "eval",
          "--adapter",
          join(dir, `run-${name}`, "adapter"),
          ...args,
        ]);
        assertEquals(after.code, 0, after.err);
        const loss = (out: string) => Number(out.match(/loss ([\d.]+)/)![1]);
        assert(loss(after.out) < loss(before.out) - 0.5, `${name}: ${before.out} → ${after.out}`);
      }
    } finally {
      await Deno.remove(model, { recursive: true });
    }
  });
});

Deno.test("predict --chat: a prompt as a user's message in the chat template; generation_config.json's end tokens stop it", async () => {
  const dir = await chatModelDir("gpt2-brown");
  try {
    const gpu = await getGpu();
    const model = await loadModel(gpu, dir);
    const tokenizer = await loadModelTokenizer(model.config);
    const rendered = "<|im_start|>user\nThe jury said<|im_end|>\n<|im_start|>assistant\n";
    const ids = tokenizer.encode(rendered, { addSpecialTokens: false });
    const g = await generate(model, tokenizer, ids, { maxNewTokens: 3, stopAtEos: false });
    model.dispose();
    const args = [
      "predict",
      "--model",
      dir,
      "--text",
      "The jury said",
      "--chat",
      "--json",
      "--max-new-tokens",
      "3",
    ];
    const plain = await runCli(args);
    assertEquals(plain.code, 0, plain.err);
    const answer = JSON.parse(plain.out);
    assertEquals([answer.completion, answer.output, answer.tokens], [g.text, g.text, 3]);
    await Deno.writeTextFile(
      `${dir}/generation_config.json`,
      JSON.stringify({ eos_token_id: [7, g.ids[ids.length]] }),
    );
    const stopped = JSON.parse((await runCli(args)).out);
    assertEquals([stopped.tokens, stopped.stop], [1, "eos"]);
    // a system message first
    const system = [{ role: "system", content: "Be brief." }, { role: "user", content: "The jury said" }];
    const m2 = await loadModel(gpu, dir);
    const sysIds = tokenizer.encode(chatTemplate(CHATML, "t").render(system, true), {
      addSpecialTokens: false,
    });
    const withSystem = await generate(m2, tokenizer, sysIds, { maxNewTokens: 3, stopAtEos: false });
    m2.dispose();
    await Deno.remove(`${dir}/generation_config.json`);
    const sys = await runCli([...args, "--system", "Be brief."]);
    assertEquals(JSON.parse(sys.out).completion, withSystem.text, sys.err);
    assertEquals((await runCli(args.filter((a) => a !== "--chat").concat("--system", "x"))).code, 2);
    await Deno.remove(`${dir}/tokenizer_config.json`);
    const none = await runCli(args);
    assertEquals(none.code, 2);
    assert(none.err.includes("has no chat template (tokenizer_config.json"), none.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recordFieldNames: a file's first record's fields, reading a JSONL file's first line alone", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    const big = join(dir, "big.jsonl");
    // a BOM and a blank line first; then a line too bad to parse, which must not be read
    await Deno.writeTextFile(
      big,
      "\ufeff\n" + JSON.stringify({ prompt: "a", completion: "b" }) + "\n{not json\n",
    );
    assertEquals(await recordFieldNames(big), ["prompt", "completion"]);
    assertEquals(await recordFieldNames(new URL("./fixtures/data/chat.parquet", import.meta.url).pathname), [
      "messages",
    ]);
    assertEquals(await recordFieldNames(join(dir, "x.txt")), null);
    await assertRejects(
      () => recordFieldNames(join(dir, "missing.jsonl")),
      DataError,
      "missing.jsonl: file not found",
    );
    await Deno.writeTextFile(join(dir, "bad.jsonl"), "[1]\n");
    await assertRejects(
      () => recordFieldNames(join(dir, "bad.jsonl")),
      DataError,
      "bad.jsonl:1: expected a JSON object",
    );
  });
});

Deno.test("chooseTask: records with labels classify; without them a causal LM learns them (a classifier's data names the missing label)", async () => {
  const gpt2 = await loadHfConfig(fixtureModel("gpt2")),
    roberta = await loadHfConfig(fixtureModel("roberta"));
  const llamaCls = {
    ...await loadHfConfig(fixtureModel("llama")),
    architectures: ["LlamaForSequenceClassification"],
  };
  await withTempDir("hartley-instruct-", async (dir) => {
    const write = async (name: string, row: Record<string, unknown>) => {
      await Deno.writeTextFile(join(dir, name), JSON.stringify(row) + "\n");
      return join(dir, name);
    };
    const labelled = await write("l.jsonl", { text: "a", label: 1 });
    const sft = await write("s.jsonl", { prompt: "a", completion: "b" });
    const texts = await write("t.jsonl", { text: "a" });
    assertEquals(await chooseTask(undefined, labelled, gpt2), "seq-cls");
    assertEquals(await chooseTask(undefined, sft, gpt2), "causal-lm");
    assertEquals(await chooseTask(undefined, texts, gpt2), "causal-lm");
    assertEquals(await chooseTask(undefined, texts, roberta), "seq-cls");
    assertEquals(await chooseTask(undefined, texts, llamaCls), "seq-cls");
    assertEquals(await chooseTask(undefined, join(dir, "x.txt"), roberta), "causal-lm");
    assertEquals(await chooseTask("seq-cls", sft, gpt2), "seq-cls");
  });
});

Deno.test("predict --data on instructions: each answer beside the expected one, and the exact-match rate", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    const model = await chatModelDir("gpt2-brown");
    try {
      const gpu = await getGpu();
      const m = await loadModel(gpu, model);
      const tokenizer = await loadModelTokenizer(m.config);
      const greedy = async (ids: number[] | string) =>
        (await generate(m, tokenizer, ids, { maxNewTokens: 4 })).text;
      const right = await greedy("The jury said");
      const conversation = [{ role: "user", content: "Where?" }];
      const chatIds = tokenizer.encode(chatTemplate(CHATML, "t").render(conversation, true), {
        addSpecialTokens: false,
      });
      const chatAnswer = await greedy(chatIds);
      m.dispose();
      const data = join(dir, "test.jsonl");
      const rows = [
        { prompt: "The jury said", completion: ` ${right.trim()} ` },
        { prompt: "The city", completion: " surely not this" },
        {
          messages: [...conversation, { role: "assistant", content: chatAnswer }, {
            role: "user",
            content: "?",
          }],
        },
      ];
      await Deno.writeTextFile(data, rows.map((r) => JSON.stringify(r)).join("\n"));
      const r = await runCli(["predict", "--model", model, "--data", data, "--max-new-tokens", "4"]);
      assertEquals(r.code, 0, r.err);
      const answers = r.out.split("\n").map((l) => JSON.parse(l));
      assertEquals(answers.map((a) => [a.completion, a.match]), [[right, true], [
        answers[1].completion,
        false,
      ], [chatAnswer, true]]);
      assertEquals(answers[2].prompt, conversation);
      assert(r.err.includes("exact match: 2/3 (0.6667)"), r.err);
    } finally {
      await Deno.remove(model, { recursive: true });
    }
  });
});

Deno.test("inspect: a decoder's attention (sliding window included), chat template and end tokens", async () => {
  const dir = await tempModelDir(fixtureModel("llama"), {
    model_type: "mistral",
    architectures: ["MistralForCausalLM"],
    sliding_window: 8,
  });
  try {
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify({ chat_template: CHATML }));
    await Deno.writeTextFile(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [2, 5] }));
    const r = await runCli(["inspect", "--model", dir]);
    assertEquals(r.code, 0, r.err);
    assert(
      r.out.includes(
        "attention 4 heads of 16, 2 key/value heads, RoPE default θ 10000, 128 positions, " +
          "a sliding window of 8 keys in every layer",
      ),
      r.out,
    );
    assert(
      r.out.includes(
        `chat      template from ${join(dir, "tokenizer_config.json")}; text ends at 2 "</s>", 5 `,
      ),
      r.out,
    );
    // 2 layers × keys and values × 2 heads × 16 values a token
    assert(
      r.out.includes(
        "kv cache  256 bytes a token as f16, 512 bytes as f32 (32.0 KiB as f16 at 128 positions)",
      ),
      r.out,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a Qwen2 model end to end: train on conversations, merge, chat with the merged model", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    // the llama fixture as Qwen2 (q/k/v biases added), with a chat template
    const model = await tempModelDir(fixtureModel("llama"), {
      model_type: "qwen2",
      architectures: ["Qwen2ForCausalLM"],
    });
    try {
      const { openSafetensors } = await import("../lib/io/safetensors.ts");
      const { writeSafetensors } = await import("../lib/io/safetensors_write.ts");
      const file = await openSafetensors(join(model, "model.safetensors"));
      const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
      for (const name of file.names) {
        tensors[name] = { dtype: "F32", shape: [...file.info(name).shape], data: await file.readF32(name) };
      }
      for (let l = 0; l < 2; l++) {
        for (const [p, n] of [["q_proj", 64], ["k_proj", 32], ["v_proj", 32]] as const) {
          tensors[`model.layers.${l}.self_attn.${p}.bias`] = {
            dtype: "F32",
            shape: [n],
            data: new Float32Array(n).fill(0.01),
          };
        }
      }
      await writeSafetensors(join(model, "model.safetensors"), tensors);
      await Deno.writeTextFile(
        join(model, "tokenizer_config.json"),
        JSON.stringify({ chat_template: CHATML }),
      );
      const data = join(dir, "chat.jsonl");
      const rows = Array.from({ length: 8 }, (_, i) => ({
        messages: [{ role: "user", content: `say ${i % 2 ? "yes" : "no"}` }, {
          role: "assistant",
          content: i % 2 ? "yes" : "no",
        }],
      }));
      await Deno.writeTextFile(data, rows.map((r) => JSON.stringify(r)).join("\n"));
      const run = join(dir, "run"), merged = join(dir, "merged");
      const common = ["--model", model, "--data", data, "--seq-len", "96", "--batch-size", "4"];
      const t = await runCli([
        "train",
        ...common,
        "--steps",
        "3",
        "--method",
        "ssh",
        "--n",
        "50",
        "--out",
        run,
        "--quiet",
      ]);
      assertEquals(t.code, 0, t.err);
      const m = await runCli(["merge", "--model", model, "--adapter", join(run, "adapter"), "--out", merged]);
      assertEquals(m.code, 0, m.err);
      const config = JSON.parse(await Deno.readTextFile(join(merged, "config.json")));
      assertEquals([config.model_type, config.architectures], ["qwen2", ["Qwen2ForCausalLM"]]);
      const args = ["--text", "say yes", "--chat", "--json", "--max-new-tokens", "3"];
      const viaAdapter = await runCli([
        "predict",
        "--model",
        model,
        "--adapter",
        join(run, "adapter"),
        ...args,
      ]);
      const viaMerged = await runCli(["predict", "--model", merged, ...args]);
      assertEquals(viaMerged.code, 0, viaMerged.err);
      assertEquals(JSON.parse(viaMerged.out).completion, JSON.parse(viaAdapter.out).completion);
    } finally {
      await Deno.remove(model, { recursive: true });
    }
  });
});

Deno.test("a chat template's special tokens (added tokens of tokenizer.json) encode to their ids, and decode away", async () => {
  await withTempDir("hartley-instruct-", async (dir) => {
    const json = JSON.parse(
      await Deno.readTextFile(new URL("./fixtures/tokenizers/bytelevel_bpe.json", import.meta.url)),
    );
    const added = (content: string, id: number) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    json.added_tokens.push(added("<|im_start|>", 512), added("<|im_end|>", 513));
    json.model.vocab["<|im_start|>"] = 512;
    json.model.vocab["<|im_end|>"] = 513;
    await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(json));
    const { loadTokenizer } = await import("../lib/io/tokenizer.ts");
    const tok = await loadTokenizer(join(dir, "tokenizer.json"));
    const text = chatTemplate(CHATML, "t").render([{ role: "user", content: "hi" }], true);
    const ids = tok.encode(text, { addSpecialTokens: false });
    assertEquals(ids.filter((id) => id >= 512), [512, 513, 512]);
    assertEquals(ids[0], 512);
    assertEquals(tok.decode(ids), "user\nhi\nassistant\n");
  });
});

Deno.test("instruction records refuse a --seq-len over GPT-2's positions, as text does, instead of cutting it silently", async () => {
  await withTempDir("hartley_instruct_len_", async (dir) => {
    const data = join(dir, "pc.jsonl");
    const rows = Array.from({ length: 6 }, (_, i) => ({ prompt: `Q${i}:`, completion: ` A${i}` }));
    await Deno.writeTextFile(data, rows.map((r) => JSON.stringify(r)).join("\n"));
    const model = "tests/fixtures/models/gpt2"; // 64 positions
    const r = await runCli([
      "train",
      "--model",
      model,
      "--data",
      data,
      "--seq-len",
      "512",
      "--out",
      join(dir, "run"),
    ]);
    assertEquals(r.code, 2, r.err);
    assert(r.err.includes(`--seq-len 512 is more than the 64 positions of ${model}`), r.err);
  });
});

/** `tokenizer`, counting the characters it is given to encode. */
function countingTokenizer(tokenizer: Tokenizer): { tokenizer: Tokenizer; encoded: () => number } {
  let chars = 0;
  const counting = Object.create(tokenizer) as Tokenizer;
  counting.encode = (text, opts) => {
    chars += text.length;
    return tokenizer.encode(text, opts);
  };
  return { tokenizer: counting, encoded: () => chars };
}

/** `turns` exchanges of a user's question and the assistant's answer. */
function longConversation(turns: number): ChatMessage[] {
  return Array.from({ length: turns }, (_, t) => [
    { role: "user", content: `Question ${t}: what comes next in the list?` },
    { role: "assistant", content: `Answer ${t}: the next one, as before.` },
  ]).flat();
}

Deno.test("tokenizeInstruction: a long conversation's text is encoded a few times over, not once per turn", async () => {
  const templates = [chatTemplate(CHATML, "chatml"), chatTemplate(GENERATION[0].template, "generation")];
  for (const name of ["gpt2", "llama"]) {
    const { tokenizer, encoded } = countingTokenizer(await tokenizerOf(name));
    for (const template of templates) {
      const messages = longConversation(48);
      const before = encoded();
      tokenizeInstruction({ messages, completionFrom: 0 }, tokenizer, { template });
      // the whole text once, and each span's ends from the span before (turns² characters before)
      const times = (encoded() - before) / template.render(messages).length;
      assert(times < 6, `${name}, ${template.source}: the text encoded ${times.toFixed(1)} times over`);
    }
  }
});

/** Words whose tokens join or split at turn boundaries: markup's letters, spaces, newlines, non-ASCII. */
const WORDS = [
  "d",
  "end",
  "n",
  "no",
  " ",
  "\n",
  "  ",
  "é",
  "日本",
  "<think>",
  "</think>",
  "22C",
  "fi",
  "So",
  "\t",
  "?",
];

/** `turns` exchanges (a system turn, tool calls, a prompt, drawn from `seed`), the tool calls for `withTools`. */
function generatedConversation(seed: number, turns: number, withTools: boolean): Instruction {
  let s = seed;
  const draw = (n: number) => (s = (s * 1103515245 + 12345) % 2 ** 31) % n;
  const text = () =>
    Array.from({ length: 1 + draw(8) }, () => WORDS[draw(WORDS.length)]).join(draw(2) ? " " : "");
  const messages: ChatMessage[] = draw(2) ? [{ role: "system", content: text() }] : [];
  for (let t = 0; t < turns; t++) {
    messages.push({ role: "user", content: text() });
    if (withTools && draw(4) === 0) {
      messages.push({ role: "assistant", content: null, tool_calls: [TOOL_CALL] });
      messages.push({ role: "tool", name: "get_weather", content: text() });
    }
    messages.push({ role: "assistant", content: draw(8) === 0 ? "" : text() });
  }
  const completionFrom = draw(3) === 0 ? draw(messages.length) : 0;
  return { messages, completionFrom, ...(withTools && { tools: TOOLS }) };
}

/** A SHA-256 of each example's ids, learnt tokens and unlearnt turns (or its error) through `template`. */
async function tokensDigest(
  examples: Instruction[],
  tokenizer: Tokenizer,
  template: ChatTemplate,
): Promise<string> {
  const made = examples.map((example) => {
    try {
      const { ids, trained, unlearntTurns } = tokenizeInstruction(example, tokenizer, { template });
      return `${ids.join(",")}|${trained.join("")}|${unlearntTurns}`;
    } catch (e) {
      return (e as Error).message;
    }
  });
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(made.join("\n")));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("tokenizeInstruction: generated conversations tokenize as they did when each span's ends were encoded whole", async () => {
  // digests of the tokens and masks made by encoding the text up to each span's ends from its start
  const expected: Record<string, string> = {
    "gpt2 chatml": "610950faa6e5942f9dca5f956d499052dde7e40cd715558345343209aea1344b",
    "gpt2 llama3": "11299e3e16df5f2d2d6976a3f052529daa6c2d51cd9507bce2bf1ea8e28efdd3",
    "gpt2 qwen3": "9e66411de8bcfa450dfb9e265731a29a7a3d37e7e587d040ea6d8cd922ea5d27",
    "gpt2 generation chatml": "2c3b0d49f233fb0abbf4842340de1d0692e817f7de5156792dd16f281ab2acc9",
    "gpt2 generation header": "3d8ae0d15a334f7207f18cdbac9208037750c92d4d39f8444b4f26de9d97bfc7",
    "gpt2 generation inline": "f9b2df83c63ad854efeef830afe300c7f58facadae301ade8dae8095956b8db2",
    "llama chatml": "62b40a8e025d6e6016a1e28de89a853008bd17bb6b6c708d21f9514b405f42e7",
    "llama llama3": "bb8c0d5a025a554e8e809b661cbd73092e691d8543ab3ad729787542297713d8",
    "llama qwen3": "1201b524cc8650de7f6d52dbae2329f4d36ecdf51300c7e0f7baddebaf645dd3",
    "llama generation chatml": "4f7636439e6d0ea66e98a8cbc139bf99ac427e0a8654b840345da1cec74f0117",
    "llama generation header": "9185d3aec348723875ee50e197b1bcc3c504e0f234a33dcf3c539587a45fe355",
    "llama generation inline": "347cced5c5c7a533e98f976d2dedf98c497e6a55057bb73462e6065eda0ffc11",
  };
  const templates = [
    chatTemplate(CHATML, "chatml"),
    LLAMA3,
    QWEN3,
    ...GENERATION.map((g) => chatTemplate(g.template, `generation ${g.name}`)),
  ];
  const got: Record<string, string> = {};
  for (const name of ["gpt2", "llama"]) {
    const tokenizer = await tokenizerOf(name);
    for (const template of templates) {
      const examples = Array.from(
        { length: 12 },
        (_, i) => generatedConversation(i + 1, [2, 3, 5, 8, 13, 21][i % 6], template === QWEN3),
      );
      got[`${name} ${template.source}`] = await tokensDigest(examples, tokenizer, template);
    }
  }
  assertEquals(got, expected);
});
