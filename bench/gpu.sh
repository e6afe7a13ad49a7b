#!/bin/bash
# One device call: hartley's benchmarks and PyTorch's anchors on the same GPU, side by side.
# On the CPU machine, once: `bash ../shared/device/prepare.sh` (fills .device/); then a device
# run with carry [".device"] and the command `bash bench/gpu.sh`. Logs go to $OUT when set.
set -uo pipefail
out=${OUT:-$(mktemp -d)}
echo "== hartley (deno task bench --full)"
bash .device/gpu-env.sh deno task bench --full 2>&1 | tee "$out/hartley_bench.txt"
echo "== PyTorch per-layer anchors (layer_bench.py)"
python3 .device/layer_bench.py 2>&1 | tee "$out/torch_layer.txt"
echo "== side by side: one layer fwd+bwd over the frozen layer's"
# hartley rows: "768×768  4096  750  <frozen ms>  1.05×  1.90×"; torch rows: "layer 768x768 T=4096 n=750: ..."
awk '/^[0-9]+×[0-9]+ +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9.]+× +[0-9.]+×/ { split($1, s, "×"); key = s[1] "x" s[2] " T=" $2; ours[key] = $5 " spectral, " $6 " dense (frozen " $4 " ms)" }
     /^layer / { key = $2 " " $3; sub(/:$/, "", key); sub(/n=[0-9]+:?/, "", key); gsub(/ +$/, "", key); torch[key] = $0; sub(/.*overhead vs frozen: /, "", torch[key]) }
     END { for (k in ours) printf "%-18s hartley SSH %s | PyTorch %s\n", k, ours[k], torch[k] }' \
  "$out/hartley_bench.txt" "$out/torch_layer.txt"
