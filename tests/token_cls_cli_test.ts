// Token classification through the CLI: train with SSH, eval, merge, predict; CoNLL files.
import { Prng } from "../lib/spectral/prng.ts";
import { assert, assertClose, assertEquals } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";
import { evalAdapterAndMerged, runCli, withTempDir } from "./train_helpers.ts";

/** `count` sentences naming people, places and firms, as JSONL records of words and IOB2 tags. */
function nerRecords(count: number, seed: number): string {
  const rng = new Prng(seed);
  const pick = (xs: string[]) => xs[rng.below(xs.length)];
  const people = ["Alice", "Maria", "Chen", "Omar"], places = ["Paris", "Lima", "Oslo", "Cairo"];
  const firms = ["Acme", "Globex", "Initech"];
  const frames = ["P moved to L", "P works for F in L", "the F office in L closed", "P met P at F"];
  return Array.from({ length: count }, () => {
    const tokens: string[] = [], ner_tags: string[] = [];
    for (const slot of pick(frames).split(" ")) {
      if (slot === "P") tokens.push(pick(people)), ner_tags.push("B-PER");
      else if (slot === "L") tokens.push(pick(places)), ner_tags.push("B-LOC");
      else if (slot === "F") tokens.push(pick(firms), "Corp"), ner_tags.push("B-ORG", "I-ORG");
      else tokens.push(slot), ner_tags.push("O");
    }
    return JSON.stringify({ tokens, ner_tags });
  }).join("\n") + "\n";
}

Deno.test("CLI: train a token classifier with SSH, then eval, merge and predict; the merged model is BertForTokenClassification", async () => {
  await withTempDir("token-cls", async (dir) => {
    await Deno.writeTextFile(`${dir}/train.jsonl`, nerRecords(96, 1));
    await Deno.writeTextFile(`${dir}/dev.jsonl`, nerRecords(24, 2));
    const model = fixtureModel("bert");
    const train = await runCli([
      "train",
      "--model",
      model,
      "--data",
      `${dir}/train.jsonl`,
      "--eval-data",
      `${dir}/dev.jsonl`,
      "--epochs",
      "3",
      "--batch-size",
      "16",
      "--seq-len",
      "24",
      "--n",
      "100",
      "--alpha",
      "50",
      "--lr",
      "0.1",
      "--head-lr",
      "0.01",
      "--target-modules",
      "all-linear",
      "--out",
      `${dir}/run`,
    ]);
    assertEquals(train.code, 0, train.err);
    assert(train.err.includes("(bert, token-cls)") && train.err.includes("; 5 tags"), train.err);
    const held = train.err.match(/held-out: loss ([\d.]+), accuracy ([\d.]+), f1 ([\d.]+)/);
    assert(held && Number(held[3]) > 0.4, `entity F1 after training: ${train.err}`);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/run/adapter/adapter_config.json`));
    assertEquals(config.task_type, "TOKEN_CLS");

    const { viaAdapter: a, viaMerged: b, config: described } = await evalAdapterAndMerged(
      model,
      `${dir}/run/adapter`,
      `${dir}/dev.jsonl`,
      `${dir}/merged`,
    );
    assertEquals(described.architectures, ["BertForTokenClassification"]);
    assertEquals(Object.values(described.id2label as object).sort(), [
      "B-LOC",
      "B-ORG",
      "B-PER",
      "I-ORG",
      "O",
    ]);
    assertEquals(a.task, "token-cls");
    const scores = (r: Record<string, unknown>) => [r.loss, r.f1, r.accuracy] as number[];
    assertClose(scores(a), scores(b), 1e-4, "adapter and merged model");
    assertClose([a.f1 as number], [Number(held![3])], 1e-3, "eval as the run's last evaluation");
    assertEquals(Object.keys(a.entities as object), ["LOC", "ORG", "PER"]);
    // the adapter's tag names map the data's tags, whatever order the file shows them in
    const lines = (await Deno.readTextFile(`${dir}/dev.jsonl`)).trim().split("\n");
    const firstTags = JSON.parse(lines[0]).ner_tags;
    const other = lines.findIndex((l) => JSON.parse(l).ner_tags[0] !== firstTags[0]);
    await Deno.writeTextFile(
      `${dir}/reordered.jsonl`,
      [lines[other], ...lines.filter((_, i) => i !== other)].join("\n"),
    );
    const reordered = await runCli([
      "eval",
      "--model",
      model,
      "--adapter",
      `${dir}/run/adapter`,
      "--data",
      `${dir}/reordered.jsonl`,
      "--json",
    ]);
    assertClose(scores(JSON.parse(reordered.out)), scores(a), 1e-6, "another first-seen order of the tags");
    const plain = await runCli(["eval", "--model", `${dir}/merged`, "--data", `${dir}/dev.jsonl`]);
    assert(/\nentity +precision +recall +f1 +support\nLOC /.test(plain.out), plain.out);

    const one = await runCli([
      "predict",
      "--model",
      `${dir}/merged`,
      "--text",
      "Maria works for Acme Corp in Oslo.",
    ]);
    assertEquals(one.code, 0, one.err);
    const [line, found] = one.out.split("\n");
    assert(
      /^Maria\/\S+ works\/\S+ for\/\S+ Acme\/\S+ Corp\/\S+ in\/\S+ Oslo\/\S+ \.\/\S+$/.test(line),
      one.out,
    );
    assert(found === undefined || /^[A-Z]+: /.test(found), one.out);
    const many = await runCli(["predict", "--model", `${dir}/merged`, "--data", `${dir}/dev.jsonl`]);
    const records = many.out.split("\n").map((l) => JSON.parse(l));
    assertEquals(records.length, 24);
    assertEquals(Object.keys(records[0]), ["words", "tags", "probabilities", "entities"]);
    assertEquals(records[0].tags.length, records[0].words.length);
  });
});

Deno.test("CLI: CoNLL files train a token classifier by themselves; a model without the head is refused for eval", async () => {
  await withTempDir("conll", async (dir) => {
    const lines = "-DOCSTART- O\n\nAda B-PER\nsang O\n\nin O\nRome B-LOC\n\nBob B-PER\nran O\n";
    await Deno.writeTextFile(`${dir}/train.conll`, lines);
    const run = await runCli([
      "train",
      "--model",
      fixtureModel("gpt2"),
      "--data",
      `${dir}/train.conll`,
      "--steps",
      "2",
      "--batch-size",
      "2",
      "--n",
      "16",
      "--eval-fraction",
      "0",
      "--out",
      `${dir}/run`,
    ]);
    assertEquals(run.code, 0, run.err);
    assert(
      run.err.includes("(gpt2, token-cls)") && run.err.includes("3 training sentences; 3 tags"),
      run.err,
    );
    const bare = await runCli([
      "eval",
      "--model",
      fixtureModel("gpt2"),
      "--task",
      "token-cls",
      "--data",
      `${dir}/train.conll`,
    ]);
    assertEquals(bare.code, 2);
    assert(bare.err.includes("has no token-cls head"), bare.err);
    const vit = await runCli([
      "train",
      "--model",
      fixtureModel("vit"),
      "--task",
      "token-cls",
      "--data",
      `${dir}/train.conll`,
      "--out",
      `${dir}/vit`,
    ]);
    assert(vit.code !== 0 && vit.err.includes("is a ViT, which takes images (task image-cls)"), vit.err);
    // part-of-speech tags name no entities: no entity F1 to keep the best evaluation by
    await Deno.writeTextFile(`${dir}/pos.conll`, "Ada NN\nsang VB\n\nBob NN\nran VB\n");
    const pos = await runCli([
      "train",
      "--model",
      fixtureModel("gpt2"),
      "--data",
      `${dir}/pos.conll`,
      "--eval-fraction",
      "0.5",
      "--eval-every",
      "1",
      "--save-best",
      "--best-metric",
      "f1",
      "--out",
      `${dir}/pos`,
    ]);
    assertEquals(pos.code, 2, pos.err);
    assert(
      pos.err.includes("report loss, accuracy (token classification; f1, precision and recall need entity"),
      pos.err,
    );
  });
});
