/**
 * Chat templates render as transformers renders them with Python's Jinja2: printed values, `tojson`,
 * and the string methods and filters that @huggingface/jinja computes otherwise (strip with
 * characters, capitalize, title, count, find, split, rsplit) follow Python; a render takes a row's
 * tools and variables; `{% generation %}` blocks are located as transformers locates them. The
 * expected texts were rendered by Jinja2 3.1.6 set up as transformers sets it up.
 */
import { type ChatMessage, chatTemplate } from "../lib/io/chat_template.ts";
import { pyFloat } from "../lib/io/chat_template_python.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";

const QWEN3 = chatTemplate(
  await Deno.readTextFile(new URL("./fixtures/chat_templates/qwen3.jinja", import.meta.url)),
  "qwen3",
);

const user = (content: string) => ({ role: "user", content });
const assistant = (content: string) => ({ role: "assistant", content });

Deno.test("chatTemplate: Qwen3's strip('\\n') and lstrip('\\n') keep an answer's indent and leading space, as Python", () => {
  assertEquals(
    QWEN3.render([user("Indent it"), assistant("    def f():\n        return 1")]),
    "<|im_start|>user\nIndent it<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n" +
      "    def f():\n        return 1<|im_end|>\n",
  );
  const messages = [
    { role: "system", content: "Be brief." },
    user("Hi"),
    assistant(" Blue."),
    user("Again"),
    assistant("<think>\nr \n</think>\n\n Blue."),
  ];
  assertEquals(
    QWEN3.render(messages),
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n Blue." +
      "<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n<think>\nr \n</think>\n\n Blue." +
      "<|im_end|>\n",
  );
});

Deno.test("chatTemplate: a message's other fields (tool_calls, name, reasoning_content) and the render's tools and variables reach the template", () => {
  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
  const call = { type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } };
  const messages = [
    user("Weather in Paris?"),
    { role: "assistant", content: null, tool_calls: [call] },
    { role: "tool", name: "get_weather", content: "22C" },
    assistant("It is 22C."),
  ];
  assertEquals(
    QWEN3.render(messages, false, { tools }),
    Deno.readTextFileSync(new URL("./fixtures/chat_templates/qwen3_tools_render.txt", import.meta.url)),
  );
  const reasoning = { role: "assistant", reasoning_content: "\n2 plus 2 is 4. \n", content: "\n4" };
  assertEquals(
    QWEN3.render([user("2+2?"), reasoning]),
    "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n2 plus 2 is 4. \n</think>\n\n4<|im_end|>\n",
  );
  assertEquals(
    QWEN3.render([user("Hi")], true, { enable_thinking: false }),
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
  );
  // a render's variables over the template's own
  const hello = chatTemplate("{{ greeting }}", "t", { greeting: "hi" });
  assertEquals([hello.render([]), hello.render([], false, { greeting: "ho" })], ["hi", "ho"]);
});

Deno.test("chatTemplate: strip/lstrip/rstrip with characters, Python's whitespace, capitalize and title (methods and filters) as Python's Jinja", () => {
  const render = (source: string, s: string) => chatTemplate(source, "t", { s }).render([]);
  const strips =
    "[{{ s.strip('x') }}|{{ s.lstrip('x ') }}|{{ s.rstrip('x') }}|{{ s.strip() }}|{{ s.strip(none) }}]";
  const cases = "[{{ s.capitalize() }}|{{ s | capitalize }}|{{ s.title() }}|{{ s | title }}|{{ s | trim }}]";
  const text = "xx hELLO wOrld-class (fOO) [bar] xx";
  assertEquals(
    render(strips, text),
    "[ hELLO wOrld-class (fOO) [bar] |hELLO wOrld-class (fOO) [bar] xx|xx hELLO wOrld-class (fOO) [bar] |" +
      "xx hELLO wOrld-class (fOO) [bar] xx|xx hELLO wOrld-class (fOO) [bar] xx]",
  );
  assertEquals(
    render(cases, text),
    "[Xx hello world-class (foo) [bar] xx|Xx hello world-class (foo) [bar] xx|" +
      "Xx Hello World-Class (Foo) [Bar] Xx|Xx Hello World-Class (Foo) [Bar] Xx|xx hELLO wOrld-class (fOO) [bar] xx]",
  );
  // Python's whitespace takes \x1c and \x85, not JavaScript's \ufeff
  const odd = "\x1c\x85 1st\ufeff ";
  assertEquals(render(strips, odd), `[${odd}|${odd}|${odd}|1st\ufeff|1st\ufeff]`);
  assertEquals(render(cases, odd), `[${odd}|${odd}|\x1c\x85 1St\ufeff |${odd}|1st\ufeff]`);
  assertEquals(
    render("[{{ s.title() }}|{{ s | title }}|{{ s.capitalize() }}]", "they're bILL's 1st"),
    "[They'Re Bill'S 1St|They're Bill's 1st|They're bill's 1st]",
  );
  // inside macros, sets and expressions too
  assertEquals(
    render(
      "{% macro f(x) %}{{ x.strip('-') }}{% endmacro %}{% set t = f(s) %}{{ [t, s.lstrip('-')] | join(',') }}",
      "-a-",
    ),
    "a,a-",
  );
  assertThrows(() => render("{{ s.strip(1) }}", "a"), "strip(): expected at most a text of characters");
  assertThrows(() => render("{{ n.strip() }}", "a"), "strip() of an undefined value: expected a text");
  assertThrows(() => render("{{ [1] | title }}", "a"), "the filter title of a list: expected a text");
});

/** Cases rendered by Python's Jinja2 3.1.6 as transformers sets it up (make_python_expected.py). */
const PYTHON = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/chat_templates/python_expected.json", import.meta.url)),
) as {
  printing: { template: string; variables: Record<string, unknown>; expected: string }[];
  floats: [number, string][];
  generation: {
    name: string;
    template: string;
    messages: ChatMessage[];
    add_generation_prompt: boolean;
    text: string;
    generation: [number, number][];
  }[];
};

Deno.test("chatTemplate: printed values, ~, string, join and tojson as Python's Jinja2 (True, None, reprs of lists and dicts; json.dumps)", () => {
  for (const { template, variables, expected } of PYTHON.printing) {
    assertEquals(chatTemplate(template, "t", variables).render([]), expected, template);
  }
  // what json.dumps refuses
  assertThrows(
    () => chatTemplate("{{ x.y | tojson }}", "t", { x: {} }).render([]),
    "the filter tojson: an undefined value is not JSON serializable",
  );
});

Deno.test("pyFloat: floats written as Python's repr() writes them", () => {
  for (const [x, repr] of PYTHON.floats) assertEquals(pyFloat(x), repr, repr);
  assertEquals([pyFloat(Infinity), pyFloat(-Infinity), pyFloat(NaN)], ["inf", "-inf", "nan"]);
});

Deno.test("chatTemplate: count, find, split and rsplit as Python's str methods; their errors", () => {
  const render = (source: string, s: string) => chatTemplate(source, "t", { s }).render([]);
  assertThrows(() => render("{{ s.split('') }}", "a"), "split(): empty separator");
  assertThrows(() => render("{{ s.rsplit(1) }}", "a"), "rsplit(): expected a separator");
  assertThrows(() => render("{{ s.split(seps=',') }}", "a"), "split(): unexpected argument seps");
  assertThrows(() => render("{{ s.count() }}", "a"), "count(): expected a text");
  assertThrows(() => render("{{ s.find('a', start=1) }}", "a"), "find(): takes no keyword arguments");
  assertThrows(() => render("{{ messages.count('a') }}", "a"), "count() of a list: expected a text");
});

Deno.test("renderGeneration: where {% generation %} blocks wrote, as transformers records it, in the text render gives", () => {
  for (const g of PYTHON.generation) {
    const template = chatTemplate(g.template, g.name, { bos_token: "<s>", eos_token: "</s>" });
    assertEquals(
      template.renderGeneration(g.messages, g.add_generation_prompt),
      { text: g.text, generation: g.generation },
      g.name,
    );
    assertEquals(template.render(g.messages, g.add_generation_prompt), g.text, g.name);
    assert(template.hasGeneration, g.name);
  }
  // a template without blocks has no ranges; a conversation holding the marks is refused, not misread
  assertEquals(QWEN3.renderGeneration([user("Hi")]).generation, null);
  assert(!QWEN3.hasGeneration);
  const chatml = chatTemplate(PYTHON.generation[0].template, "chatml");
  assertThrows(
    () => chatml.renderGeneration([user("Hi"), assistant("a\uFDD1b")]),
    "chatml: where the chat template's {% generation %} blocks wrote cannot be told",
  );
});
