#!/bin/bash
# One device call: hartley's benchmarks and PyTorch's on the same GPU, side by side, ratios last.
# On the CPU machine, once: `bash bench/gpu_prepare.sh` (fills .device/); then a device run
# with carry [".device"] and the command `bash .device/gpu-env.sh bash bench/gpu.sh`.
# Each part has a time limit so one slow part cannot eat the call. A device call brings back at
# most 8 files from $OUT: the parts' logs come back as one $OUT/logs.tgz, and everything printed
# (parts and the side-by-side summary) as $OUT/gpu.log.
# Arguments name the parts to run (default: all of them), e.g. `bash bench/gpu.sh steps torch_steps`.
set -uo pipefail
# GPU tests: all but those that load the CLI or the npm datasets (not carried to the device
# machine) or start a deno of their own (which would look for the lockfile's packages: found by
# what they call, Deno.execPath() or cliProcess)
tests=$(grep -L -E 'Deno\.execPath\(\)|cliProcess' $(ls tests/*_test.ts |
  grep -v -E '/(brown_perplexity|cli|data|data_files|task_heads|cli_mistakes|resume|trainer|examples|accumulate|best|image_files|instruct|chat|quant_cli|token_cls_cli|distilbert_cli|phi3_cli|image_stream)_test.ts$'))
if [ "${1:-}" = --list-tests ]; then echo $tests; exit 0; fi
out=${OUT:-$(mktemp -d)}
logs=$(mktemp -d)
parts=" ${*:-dispatch rows wide_tiles big_tiles qkv_tiles wgrad_tiles attn_tiles f16_loads presets steps_presets steps steps_grad torch_steps steps_tuned fusions attention steps_fused_attention checkpointing bench delta_weight torch_layer torch_matmul matmul_tiles steps_f16 quant steps_quant gemv decode steps_sft generate bind_groups image_decode tests} "
# STEP_ARGS replaces the step benchmark's arguments, e.g. "--methods=ssh,lora"
step_args=${STEP_ARGS:---profile}
# offline: the pruned cache from gpu_prepare.sh, without the lockfile's other packages
export DENO_DIR=$PWD/.device/deno_dir
run="deno run -A --no-lock --cached-only"
budget=${BUDGET:-480} # seconds for all parts; a part gets at most what is left
part() { # part NAME SECONDS COMMAND...: run with a limit, keep the log
  local name=$1 limit=$2; shift 2
  [[ $parts == *" $name "* ]] || return 0
  local left=$((budget - SECONDS))
  if [ "$left" -lt 20 ]; then echo "== $name: skipped (budget spent)"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" >"$logs/$name.txt" 2>&1
  local rc=$?
  cat "$logs/$name.txt"
  echo "-- $name: exit $rc, $((SECONDS - t0)) s"
}
# everything printed from here on is also kept in $out/gpu.log (a pipeline: it is whole when the script ends)
{
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader 2>/dev/null
part dispatch 30 $run bench/dispatch.ts
# PyTorch's parts first: they are what the comparisons need, and a call short of budget still has them.
# Its f32 products (no TF32) at the shapes of the bench's matmul table, its training steps and one layer
part torch_matmul 45 python3 bench/torch_matmul.py
part torch_steps 120 python3 bench/torch_steps.py
part torch_layer 45 python3 .device/layer_bench.py
part rows 30 $run bench/rows.ts
# tiles for the 768-wide products of a RoBERTa-base step (the `wide` preset's), and `big` at 4096³
# and the LLaMA shapes. `/s1` forbids the K split that the planner adds below 264 workgroups: 128×96
# makes 256 of them at 4096×768 (one wave), 128×192 makes 128 (one per SM).
# 64x128x8_4x8_2 has 256 invocations (twice the warps of `wide`, half the accumulators each)
wide_variants=auto,128x96x8_8x12_2/s1,128x96x16_8x12_2/s1,128x192x8_8x16_2/s1,64x192x8_4x16_2/s1,128x128x8_8x16_2/s1,128x96x8_8x12_2,64x128x8_4x8_2
part wide_tiles 90 $run bench/matmul.ts --large --no-f16 --reps=10 \
  --shapes=4096x768x768NT,4096x768x768NN,4096x768x3072NT,4096x768x3072NN --tiles=$wide_variants
# 128x128x8_8x8_2 is the classic 256-invocation SGEMM blocking (8×8 accumulators each), never measured here
part big_tiles 60 $run bench/matmul.ts --large --no-f16 --reps=10 \
  --shapes=4096x4096x4096NN,4096x4096x4096NT,2048x4096x4096NT,2048x11008x4096NT,2048x4096x11008NN \
  --tiles=auto,128x128x16_8x16_2,128x256x8_8x16_2,128x128x8_8x16_2g16,128x128x8_8x16_2g4,wide,128x128x8_8x8_2,128x128x16_8x8_2
# the fused q/k/v product of a RoBERTa-base layer (4096×2304×768 forward, 4096×768×2304 for dX): `big`
# makes 576 workgroups there (2.2 waves of 264), `wide` 1152; which one the tail favours is unmeasured
part qkv_tiles 45 $run bench/matmul.ts --large --no-f16 --reps=10 \
  --shapes=4096x2304x768NT,4096x768x2304NN --tiles=auto,wide,big,128x96x8_8x12_2/s1,128x192x8_8x16_2/s1,128x128x8_8x8_2
# full fine-tuning's weight gradients at RoBERTa-base (dW = dYᵀ·X over 4096 tokens: o, stacked q/k/v,
# MLP up and down): 19.0 TFLOP/s at 768×768 (`medium` split in 2) against cuBLAS's 43.6 in session 23,
# and 31.8 of the full step's 91 GPU ms. No preset fills the GPU at these outputs without a K split,
# which the planner only gives `medium`; big tiles split 4–8 ways are untried
part wgrad_tiles 60 $run bench/matmul.ts --large --no-f16 --reps=10 \
  --shapes=768x768x4096TN,2304x768x4096TN,3072x768x4096TN,768x3072x4096TN \
  --tiles=auto,medium/s1,medium/s4,wide/s1,wide/s2,wide/s4,tall/s2,tall/s4,big/s2,big/s4,big/s8
# attention's per-head products at RoBERTa-base (384 heads of 128 tokens, D = 64): scores and dP (NT),
# P·V and dQ (NN), dK and dV (TN); session 3 measured 3.3 ms of them per step (≈ 17 TFLOP/s)
part attn_tiles 45 $run bench/matmul.ts --large --no-f16 --reps=10 \
  --shapes=128x128x64NTb384,128x64x128NNb384,128x64x128TNb384 \
  --tiles=auto,wide,medium,big,128x64x8_8x8_2,64x64x8_4x8_2,64x64x8_4x4_2
# f16 B loaded as vec4<f16> against u32 pairs unpacked (MATMUL_HEURISTICS.f16Loads): session 11
# measured f16 B 8% slower than f32 at 4096³ NN and 3–5% at the 768-wide NT products
f16_shapes=4096x4096x4096NN,4096x4096x4096NT,4096x768x3072NT,4096x768x768NT,4096x768x768NN,2048x11008x4096NT
part f16_loads 75 bash -c "for l in native packed; do echo \"-- f16-loads=\$l\"; $run bench/matmul.ts --large --reps=10 --f16-loads=\$l --shapes=$f16_shapes; done"
# the presets chooseTile weighs (big, tall, wide), at the shapes where its estimate is closest or untried
part presets 45 $run bench/matmul.ts --large --no-f16 --reps=10 --tiles=auto,big,tall,wide \
  --shapes=4096x3072x768NT,4096x3072x768NN,2048x11008x4096NT,4096x1536x768NT,128x128x64NTb384
# the step with and without `tall`, alternating
part steps_presets 90 bash -c "for i in 1 2; do for p in big,tall,wide big,wide; do echo \"-- presets=\$p\"; $run bench/step.ts --models=roberta-base --methods=ssh,lora --presets=\$p; done; done"
# the wide_tiles variant with the least step time: each shape weighted by its count per layer
# (q, k, v, o and their input gradients: 4 each; MLP down and MLP up's input gradient: 1 each)
# (a variant forced to /s1 is tried in the step with --fill=0.5, which splits K only below half a wave)
best_wide=""
if [ -f "$logs/wide_tiles.txt" ]; then
  best_wide=$(awk '$1 ~ /^4096×768×/ && $3 == "f32" { w = ($1 == "4096×768×768") ? 4 : 1; v = $4; if (v !~ /\/s1$/) sub(/\/s[0-9]+$/, "", v); t[v] += w * $5; n[v]++ }
    END { for (v in t) if (n[v] == 4 && (best == "" || t[v] < t[best])) best = v; print best }' "$logs/wide_tiles.txt")
  echo "== best wide tile: ${best_wide:-none}"
fi
part steps 300 $run bench/step.ts $step_args
# SSH and FourierFT with the coefficient gradient's FHTs fused into its pass (lib/spectral/coef_grad.ts),
# against `steps` (separate FHTs and passes: the fusion was 0.5 GPU ms a RoBERTa-base step slower on the
# H200 in session 23)
part steps_grad 60 $run bench/step.ts --models=roberta-base --methods=ssh,fourierft --coef-grad=fused
if [ -n "$best_wide" ] && [ "$best_wide" != auto:wide ]; then
  tuned="--wide-tile=${best_wide%/s1}"
  [ "$best_wide" != "${best_wide%/s1}" ] && tuned="$tuned --fill=0.5"
  part steps_tuned 60 $run bench/step.ts --models=roberta-base --methods=ssh,lora $tuned
fi
# each fusion off in turn (lib/nn/fusions.ts), against `steps`: what each is worth on this GPU
part fusions 110 bash -c "for f in qkv ffn norm head; do echo \"-- no-fuse=\$f\"; $run bench/step.ts --models=roberta-base --methods=ssh --no-fuse=\$f; done"
# fused attention against materialised probabilities (ms and peak memory): where `auto` should fuse
part attention 60 $run bench/attention.ts
part steps_fused_attention 45 $run bench/step.ts --models=roberta-base --methods=ssh --attention=fused
# gradient checkpointing: peak memory and step time against `steps`
part checkpointing 45 $run bench/step.ts --models=roberta-base --methods=ssh --checkpointing
part bench 120 $run bench/main.ts --full --no-steps
# one fold's W + ΔW (one kernel, three passes) against an FHT of as many rows: 52 µs a 768×768 ΔW in
# session 23's step profile, ≈ 17 FHTs' worth of 768 rows; random positions against crowded ones
part delta_weight 30 $run bench/delta_weight.ts --reps=50
part matmul_tiles 60 $run bench/matmul.ts --large --no-f16 --reps=10 \
  --shapes=4096x4096x4096NN,4096x4096x4096NT,4096x768x3072NT,4096x768x768NN \
  --tiles=auto,64x256x8_8x16_2,128x128x8_16x8_2,128x128x8_8x16_2,64x256x16_8x16_1,128x128x16_16x8_1,64x128x8_8x8_2g4
part steps_f16 60 $run bench/step.ts --dtype=f16 --methods=ssh
# B stored as q8 and q4 codes (turned into f32 at the shared store) against f32 and f16, then the steps
part quant 60 $run bench/matmul.ts --large --quant --reps=10 \
  --shapes=4096x4096x4096NN,4096x4096x4096NT,4096x768x768NT,2048x11008x4096NT,8x4096x4096NT
part steps_quant 120 bash -c "$run bench/step.ts --dtype=q8 --methods=ssh; $run bench/step.ts --dtype=q4 --methods=ssh"
# decoding's products (1 or 8 rows against a LLaMA-7B weight): the GEMV, then the m8 tile
# (without LLaMA's 32000×4096 head, whose f16/q8/q4 copies took the part's minute on the CPU in
# session 11: `decode` times the head)
gemv_shapes=1x4096x4096NT,8x4096x4096NT,1x11008x4096NT,1x4096x11008NT
part gemv 120 bash -c "$run bench/matmul.ts --quant --reps=20 --shapes=$gemv_shapes; $run bench/matmul.ts --quant --reps=20 --no-gemv --shapes=$gemv_shapes"
# greedy decoding through one LLaMA-7B layer and its LM head: weight storage, f16 cache, GEMV or m8 tile
part decode 120 $run bench/decode.ts --model llama7b-layer --dtypes f16,q8,q4 --tokens 48 --reps 2
# instruction tuning at Qwen2.5-0.5B's vocabulary: the LM head at the learnt positions, against the whole head
part steps_sft 90 bash -c "$run bench/step.ts --models=qwen-sft-layer --methods=ssh,lora; $run bench/step.ts --models=qwen-sft-layer --methods=ssh,lora --no-fuse=head"
# greedy generation: full passes, the key/value cache with a readback per token, and 16 tokens per readback
part generate 45 $run bench/generate.ts --prompt-tokens 64 --new-tokens 48 --reps 2
part bind_groups 30 $run bench/bind_groups.ts
# images decoded and resized on the worker pool against one after another in this thread: the pool
# had one worker on the 2-core CPU machine (session 21); here it has 8
part image_decode 60 $run bench/image_decode.ts --copies 400 --rounds 2
# one test file at a time, each test named as it ends, unchecked (CI type-checks them): on the H200
# (session 23) the 703 tests took ≈ 340 s so, a call of their own; with --parallel (16 files at once,
# each with its own WebGPU device, a file's results printed when it ends) no file that uses the GPU
# had ended after two minutes
part tests 360 deno test -A --no-check --no-lock --cached-only $tests
echo
echo "== side by side"
if [ -f "$logs/torch_layer.txt" ]; then
  echo "one layer fwd+bwd over the frozen layer's (hartley SSH spectral | PyTorch)"
  # hartley: "768×768  4096  750  <frozen ms>  1.05×  1.90×"; PyTorch: "layer 768x768 T=4096 n=750: ..."
  awk '/^[0-9]+×[0-9]+ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9.]+× +[0-9.]+×/ { split($1, s, "×"); key = s[1] "x" s[2] " T=" $2; ours[key] = $5 " (frozen " $4 " ms)" }
       /^layer / { key = $2 " " $3; t = $0; sub(/.*overhead vs frozen: /, "", t); torch[key] = t }
       END { for (k in ours) printf "  %-18s hartley %s | PyTorch %s\n", k, ours[k], torch[k] }' \
    "$logs/bench.txt" "$logs/torch_layer.txt"
fi
if [ -f "$logs/bench.txt" ] && [ -f "$logs/torch_matmul.txt" ]; then
  echo "matmul f32, GFLOP/s (hartley's default tile | PyTorch, no TF32)"
  # hartley: "4096×4096×4096 NN  square  f32  auto:big  3.906  35186.9  9.8e-8" (the middle column has
  # spaces: fields are taken from the end); PyTorch: "torch-matmul 4096×4096×4096 NN 2.720 50530.1"
  awk 'FNR == 1 { file++ }
       file == 1 && $1 ~ /^[0-9]+×[0-9]+×[0-9]+$/ && $(NF - 4) == "f32" { ours[$1 " " $2] = $(NF - 1); order[++n] = $1 " " $2 }
       file == 2 && $1 == "torch-matmul" { torch[$2 " " $3] = $5 }
       END { for (i = 1; i <= n; i++) { k = order[i]; if (!(k in torch)) continue;
               printf "  %-22s hartley %8.0f | PyTorch %8.0f | ours/theirs %.2f×\n", k, ours[k], torch[k], ours[k] / torch[k] } }' \
    "$logs/bench.txt" "$logs/torch_matmul.txt"
fi
[ -f "$logs/steps.txt" ] && [ -f "$logs/torch_steps.txt" ] || exit 0
echo "training step, ms (f32 weights; hartley steady-state wall clock | PyTorch CUDA events)"
# hartley rows: "roberta-base  ssh  7290  43.10  41.00 ..."; PyTorch: "torch-step roberta-base ssh 52.31 1.23"
awk 'FNR == 1 { file++ }
     file == 1 && $1 ~ /^(roberta|llama)/ && ($3 ~ /^[0-9]+$/ || $4 == "ms/step") {
       # a table row ("roberta-base ssh 610130 54.18 …"), or the line each run prints as it ends
       # ("roberta-base ssh: 54.18 ms/step …"), which a cut run leaves without the table
       k = $1 " " $2; v = $4; if ($4 == "ms/step") { k = $1 " " substr($2, 1, length($2) - 1); v = $3 }
       if (!(k in ours)) order[++n] = k; ours[k] = v }
     file == 2 && $1 == "torch-step" { torch[$2 " " $3] = $4; if ($3 == "lora") lora[$2] = $4 }
     END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, " ");
             t = torch[k]; r = t ? sprintf("%.2f×", ours[k] / t) : "—"; l = lora[p[1]] ? sprintf("%.2f×", ours[k] / lora[p[1]]) : "—";
             printf "  %-26s hartley %8.2f | PyTorch %8s | ours/theirs %s | ours/PyTorch LoRA %s\n", k, ours[k], t ? t : "—", r, l } }' \
  "$logs/steps.txt" "$logs/torch_steps.txt"
} 2>&1 | tee "$out/gpu.log"
tar czf "$out/logs.tgz" -C "$logs" .
