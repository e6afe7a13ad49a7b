/**
 * An embedding table of a loaded model (token, position or token-type embeddings).
 * @module
 */
import { embedding, type Tensor } from "../tensor/mod.ts";
import { param } from "./norm.ts";

/** Rows of a [vocab, dim] table (f32, or frozen f16) picked by i32 ids. */
export class Embedding {
  constructor(
    /** The checkpoint key of the table, e.g. `transformer.wte.weight`. */
    readonly key: string,
    readonly weight: Tensor,
    /** Rows that get no gradient (nn.Embedding's padding_idx). */
    readonly paddingIdx?: number,
  ) {
    if (weight.shape.length !== 2) throw new Error(`${key}: expected a 2-D table, got ${weight.describe()}`);
  }

  /** Take the table `key` from `params`. */
  static from(params: ReadonlyMap<string, Tensor>, key: string, paddingIdx?: number): Embedding {
    return new Embedding(key, param(params, key), paddingIdx);
  }

  /** Number of rows. */
  get size(): number {
    return this.weight.shape[0];
  }

  /** Width of a row. */
  get dim(): number {
    return this.weight.shape[1];
  }

  /** ids [...] (i32) → [..., dim]. */
  forward(ids: Tensor): Tensor {
    try {
      return embedding(
        this.weight,
        ids,
        this.paddingIdx === undefined ? {} : { paddingIdx: this.paddingIdx },
      );
    } catch (e) {
      throw new Error(`${this.key}: ${(e as Error).message}`);
    }
  }
}
