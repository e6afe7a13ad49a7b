/**
 * The tests every encoder family (BERT, RoBERTa, ViT) passes, registered per family by its test
 * file: PyTorch parity in f32 and f16, the SSH references on both attention paths, the hidden
 * states at padded positions, gradients against a central difference, and a checkpoint with a
 * missing or wrongly shaped tensor rejected by name.
 * @module
 */
import { getGpu } from "../lib/gpu/mod.ts";
import { withAttentionPath } from "../lib/tensor/mod.ts";
import { assert } from "./assert.ts";
import {
  editedModel,
  expectGradientsMatchDifferences,
  expectPaddedHiddenParity,
  expectParity,
  expectSshReferences,
  loadError,
} from "./encoder_test_helpers.ts";

/** What a family's suite needs to know. */
export interface EncoderSuite {
  /** Fixture name under tests/fixtures/models. */
  name: string;
  /** The transformers class of the fixture's checkpoint (named in the parity test). */
  architecture: string;
  /** Whether the fixture batch has padded positions (token inputs do; ViT's images have none). */
  padded: boolean;
  /** f32 parameters whose gradient is checked against a central difference. */
  gradParams: string[];
  /** A tensor to drop from the checkpoint, with the shape the error names. */
  missing: { name: string; shape: number[] };
  /** Tensors to give a wrong `shape`, each in its own checkpoint, with the shape the error expects. */
  reshaped: { name: string; shape: number[]; expected: number[] }[];
}

/** Register the shared encoder tests for `s`. */
export function encoderSuite(s: EncoderSuite): void {
  const dir = `tests/fixtures/models/${s.name}`;

  Deno.test(`${s.name}: ${s.architecture} matches PyTorch (logits, loss, last hidden state)`, async () => {
    await expectParity(await getGpu(), dir, 1e-4);
  });

  Deno.test(`${s.name}: with SSH on every target (dht, dht2d, dft), logits, loss and ∂loss/∂coef match PyTorch`, async () => {
    await expectSshReferences(await getGpu(), dir, 1e-4);
  });

  Deno.test(`${s.name}: fused attention (no stored probabilities) matches PyTorch too: logits, loss, ∂loss/∂coef`, async () => {
    const gpu = await getGpu();
    await withAttentionPath("fused", () => expectSshReferences(gpu, dir, 1e-4));
  });

  if (s.padded) {
    Deno.test(`${s.name}: hidden states at right-padded positions match PyTorch too`, async () => {
      await expectPaddedHiddenParity(await getGpu(), dir);
    });
  }

  Deno.test(`${s.name}: f16 weight storage stays close to PyTorch`, async () => {
    const gpu = await getGpu();
    if (!gpu.f16) return;
    await expectParity(gpu, dir, 5e-3, "f16");
  });

  Deno.test(`${s.name}: gradients agree with a finite difference of the loss`, async () => {
    await expectGradientsMatchDifferences(await getGpu(), dir, s.gradParams);
  });

  Deno.test(`${s.name}: a checkpoint missing a tensor, or with one of the wrong shape, is rejected by name`, async () => {
    const gpu = await getGpu();
    const dirs = [await editedModel(dir, (t) => delete t[s.missing.name])];
    for (const r of s.reshaped) {
      dirs.push(await editedModel(dir, (t) => t[r.name] = { ...t[r.name], shape: r.shape }));
    }
    try {
      const missing = await loadError(gpu, dirs[0]);
      assert(missing.includes(`missing ${s.missing.name} [${s.missing.shape}]`), missing);
      for (const [i, r] of s.reshaped.entries()) {
        const e = await loadError(gpu, dirs[i + 1]);
        assert(e.includes(`${r.name} is [${r.shape}], expected [${r.expected}]`), e);
      }
    } finally {
      for (const d of dirs) await Deno.remove(d, { recursive: true });
    }
  });
}
