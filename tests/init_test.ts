import { assertEquals } from "./assert.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { modelShapes } from "../lib/models/shapes.ts";
import { initKind } from "../lib/nn/init.ts";
import { initParam, initStd } from "../lib/train/init.ts";
import { Prng } from "../lib/spectral/prng.ts";

const FIXTURES = "tests/fixtures/models";

Deno.test("init rule: every norm weight of every family starts at 1, biases at 0, the rest random", async () => {
  const norms: Record<string, string[]> = {
    gpt2: ["ln_1", "ln_2", "ln_f"],
    llama: ["input_layernorm", "post_attention_layernorm", "norm"],
    bert: ["LayerNorm"],
    roberta: ["LayerNorm"],
    vit: ["layernorm_before", "layernorm_after", "layernorm"],
  };
  for (const [family, names] of Object.entries(norms)) {
    const config = await loadHfConfig(`${FIXTURES}/${family}/config.json`);
    const params = modelShapes(config, { architecture: config.architectures[0] }).params;
    const ones = new Set(
      params.filter((p) => initKind(p.key) === "ones").map((p) => p.key.split(".").at(-2)),
    );
    assertEquals([...ones].sort(), [...names].sort(), `${family} norm weights`);
    for (const p of params) {
      if (p.key.endsWith(".bias")) assertEquals(initKind(p.key), "zeros", p.key);
      if (/(proj|query|value|dense|c_attn|c_fc)\.weight$/.test(p.key)) {
        assertEquals(initKind(p.key), "random", p.key);
      }
    }
  }
});

Deno.test("initParam: GPT-2's residual projections get 0.02/√(2·layers); values follow the rule", async () => {
  const config = await loadHfConfig(`${FIXTURES}/gpt2/config.json`);
  const range = typeof config.raw.initializer_range === "number" ? config.raw.initializer_range : 0.02;
  assertEquals(
    initStd("transformer.h.0.attn.c_proj.weight", config),
    range / Math.sqrt(2 * config.numLayers),
  );
  assertEquals(initStd("transformer.h.0.attn.c_attn.weight", config), range);
  const rng = new Prng(1);
  const p = (key: string) => ({ key, shape: [3, 4] });
  assertEquals([...initParam(p("transformer.ln_f.weight"), config, rng)], new Array(12).fill(1));
  assertEquals([...initParam(p("transformer.h.0.mlp.c_fc.bias"), config, rng)], new Array(12).fill(0));
});
