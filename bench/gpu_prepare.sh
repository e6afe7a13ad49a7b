#!/bin/bash
# On the CPU machine, before a device call of bench/gpu.sh: fill .device/ (git-ignored) with
# Deno and the Vulkan loader (../shared/device/prepare.sh), plus a Deno cache holding the one
# npm package the benchmarks and GPU tests import (@huggingface/tokenizers): the device machine
# has no network, and the whole cache (datasets included) is over the call's 64 MiB.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
bash ../shared/device/prepare.sh
rm -rf .device/deno_dir
DENO_DIR=.device/deno_dir deno cache bench/main.ts bench/step.ts bench/matmul.ts $(bash bench/gpu.sh --list-tests)
# deno cache installs every package of the lockfile; keep the tokenizer only (gpu.sh runs --no-lock)
find .device/deno_dir/npm/registry.npmjs.org -mindepth 1 -maxdepth 1 ! -name @huggingface -exec rm -rf {} +
du -sh .device
