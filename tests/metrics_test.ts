import { f1, matthews, pearson, spearman } from "../lib/train/metrics.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";

const reference = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/metrics/metrics.json", import.meta.url)),
);

Deno.test("metrics: MCC and F1 as scikit-learn, Pearson and Spearman (with ties) as SciPy", () => {
  for (const c of reference.classification) {
    assertClose([matthews(c.pred, c.truth)], [c.mcc], 1e-12, `mcc of ${c.pred.length}`);
    if (c.f1 !== undefined) assertClose([f1(c.pred, c.truth)], [c.f1], 1e-12, `f1 of ${c.pred.length}`);
  }
  for (const r of reference.regression) {
    assertClose([pearson(r.x, r.y)], [r.pearson], 1e-12, `pearson of ${r.x.length}`);
    assertClose([spearman(r.x, r.y)], [r.spearman], 1e-12, `spearman of ${r.x.length}`);
  }
  assertEquals(f1([0, 0], [0, 0]), 0);
  // a NaN (a diverged regression head) gives NaN, as SciPy and Pearson here, not a sorted rank
  assert(
    Number.isNaN(spearman([1, NaN, 2, 0.5], [1, 2, 3, 4])) && Number.isNaN(pearson([1, NaN, 2], [1, 2, 3])),
  );
  assertThrows(() => pearson([1], [1, 2]), "need two equal, non-empty lists");
});

Deno.test("pearson: NaN for a constant side whose mean rounds off its values; never outside [−1, 1] (SciPy)", () => {
  // the mean of three 0.1s is not 0.1 in float64: the deviations are tiny, not 0
  for (const [x, y] of [[[0.1, 0.1, 0.1], [1, 2, 4]], [[1, 2, 4], [0.3, 0.3, 0.3]]]) {
    assert(Number.isNaN(pearson(x, y)), `pearson(${x}, ${y}) = ${pearson(x, y)}`);
    assert(Number.isNaN(spearman(x, y)), `spearman(${x}, ${y}) = ${spearman(x, y)}`);
  }
  // a perfect line whose rounding gives 1.0000000000000002 unclipped
  const x = [0.1, 0.2, 0.3];
  assertEquals([pearson(x, x.map((v) => 3.7 * v + 0.1)), pearson(x, x.map((v) => -3.7 * v + 0.1))], [1, -1]);
});
