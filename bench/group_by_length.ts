/**
 * `train --group-by-length` against plain shuffled batches, side by side: the same classifier
 * trained on texts of varied length (Brown corpus words, exponentially distributed lengths with a
 * mean of 25 words, at most 110), the two settings taking turns; wall seconds of each run (model
 * loading included), and the padded tokens per real token of one epoch's batches.
 *
 *     deno run -A bench/group_by_length.ts [--model models/default] [--steps 40] [--reps 2]
 * @module
 */
import { benchArgs } from "./args.ts";
import { join } from "node:path";
import { main } from "../cli.ts";
import { loadBrownText } from "../lib/train/datasets.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { loadModelTokenizer } from "../lib/models/load.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { ClassificationDataset } from "../lib/train/data.ts";
import { BatchIterator } from "../lib/train/batches.ts";
import { median, table } from "./stats.ts";

const { values: v } = benchArgs(import.meta.url, {
  model: { type: "string", default: "models/default" },
  steps: { type: "string", default: "40" },
  reps: { type: "string", default: "2" },
});
const dir = await Deno.makeTempDir({ prefix: "hartley-gbl-" });
try {
  const words = (await loadBrownText()).split(/\s+/);
  const rng = new Prng(1);
  const rows: { text: string; label: number }[] = [];
  for (let i = 0, at = 0; i < 800; i++) {
    const n = Math.min(110, 3 + Math.floor(-25 * Math.log(1 - rng.uniform())));
    rows.push({ text: words.slice(at, at += n).join(" "), label: i % 2 });
  }
  const data = join(dir, "varied.jsonl");
  await Deno.writeTextFile(data, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  // padding of one epoch's batches
  const tokenizer = await loadModelTokenizer(await loadHfConfig(v.model!));
  const dataset = new ClassificationDataset(rows, tokenizer, { maxLength: 128 });
  const padding = (groupByLength: boolean) => {
    const it = new BatchIterator(dataset, { batchSize: 16, seed: 0, groupByLength });
    let padded = 0, real = 0;
    for (let step = 0; step < it.stepsPerEpoch; step++) {
      const b = it.batch({ epoch: 0, step });
      padded += b.ids.length;
      real += b.attentionMask.reduce((a, m) => a + m, 0);
    }
    return padded / real;
  };
  const seconds: Record<string, number[]> = { plain: [], grouped: [] };
  for (let r = 0; r < Number(v.reps); r++) {
    for (const [name, flags] of [["plain", []], ["grouped", ["--group-by-length"]]] as const) {
      const t0 = performance.now();
      const args = ["train", "--model", v.model!, "--data", data, "--steps", v.steps!, "--seq-len", "128"];
      const code = await main([
        ...args,
        "--batch-size",
        "16",
        "--out",
        join(dir, "run"),
        "--overwrite",
        "--quiet",
        ...flags,
      ]);
      if (code !== 0) throw new Error(`train exited with ${code}`);
      seconds[name].push((performance.now() - t0) / 1000);
    }
  }
  const plain = median(seconds.plain);
  console.log(`${v.model}: 800 texts of 3–110 words, ${v.steps} steps of 16, --seq-len 128`);
  console.log(table(["batches", "padded / real tokens", "run s", "vs plain"], [
    ["shuffled", padding(false).toFixed(2), plain.toFixed(1), "1.00×"],
    [
      "--group-by-length",
      padding(true).toFixed(2),
      median(seconds.grouped).toFixed(1),
      `${(median(seconds.grouped) / plain).toFixed(2)}×`,
    ],
  ]));
} finally {
  await Deno.remove(dir, { recursive: true });
}
