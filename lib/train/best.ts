/**
 * Ranking a run's evaluations to find its best one: the metric that ranks them, whether an
 * evaluation is better than the best so far, and how many in a row were not (for early stopping).
 * Plain functions of values; the trainer writes the best weights and logs what they found.
 * @module
 */
import type { BestMetric, BestState } from "./checkpoint.ts";
import type { EvalResult } from "./tasks.ts";

/** Where a run's evaluations stand; a checkpoint keeps both. */
export interface Ranking {
  /** The best evaluation so far. */
  best?: BestState;
  /** Evaluations before the first best (all NaN). */
  unranked: number;
}

/** What {@link rankEvaluation} found for one evaluation. */
export interface Ranked {
  /** The ranking with the evaluation counted in. */
  ranking: Ranking;
  /** The metric that ranked the evaluation. */
  metric: BestMetric;
  /** The evaluation's value of `metric`. */
  value: number;
  /**
   * "better": the new best; "unranked": NaN with no best of this metric to compare with;
   * "worse": not better than the best.
   */
  outcome: "better" | "unranked" | "worse";
  /** Evaluations in a row that count towards the patience (0 when better). */
  notBetter: number;
}

/**
 * Compare evaluation `r`, run after `step`, with the best so far by metric `by` (default
 * {@link defaultMetric}): keep it if better, else count it towards the patience.
 */
export function rankEvaluation(
  ranking: Ranking,
  r: EvalResult,
  step: number,
  by?: BestMetric,
): Ranked {
  const metric = by ?? defaultMetric(r);
  const value = r[metric];
  if (value === undefined) {
    const reported = Object.keys(r).filter((k) => k !== "examples" && k !== "targets").join(", ");
    throw new Error(
      `train: the evaluation reports no ${metric} to find the best one by (it reports ${reported})`,
    );
  }
  const { best, unranked } = ranking;
  // a resumed run that compares another metric starts its best afresh; NaN is never better
  const first = !best || best.metric !== metric;
  const better = !Number.isNaN(value) &&
    (first || (metric === "loss" ? value < best!.value : value > best!.value));
  if (better) {
    const ranked = { best: { step, metric, value, since: 0 }, unranked };
    return { ranking: ranked, metric, value, outcome: "better", notBetter: 0 };
  }
  if (first) {
    // the first sets transformers' reference (None, then -inf); each later one is not better
    return {
      ranking: { best, unranked: unranked + 1 },
      metric,
      value,
      outcome: "unranked",
      notBetter: unranked,
    };
  }
  const since = best!.since + 1;
  return {
    ranking: { best: { ...best!, since }, unranked },
    metric,
    value,
    outcome: "worse",
    notBetter: since,
  };
}

/**
 * What a run's best evaluation is by default: the entity F1 of a token classifier with entity tags,
 * else accuracy when reported, else Pearson correlation (regression), else the loss.
 */
export function defaultMetric(r: EvalResult): BestMetric {
  return r.precision !== undefined
    ? "f1"
    : r.accuracy !== undefined
    ? "accuracy"
    : r.pearson !== undefined
    ? "pearson"
    : "loss";
}
