/**
 * Chat templates render as transformers renders them with Python's Jinja2: string methods and
 * filters that @huggingface/jinja computes otherwise (strip with characters, capitalize, title)
 * follow Python, and a render takes a row's tools and variables. The expected texts were rendered
 * by Jinja2 3.1.6 set up as transformers sets it up.
 */
import { chatTemplate } from "../lib/io/chat_template.ts";
import { assertEquals, assertThrows } from "./assert.ts";

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
