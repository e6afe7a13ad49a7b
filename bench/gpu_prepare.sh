#!/bin/bash
# On the CPU machine, before a device call of bench/gpu.sh: fill .device/ (git-ignored) with
# Deno and the Vulkan loader (../shared/device/prepare.sh); the GL dispatch libraries that
# NVIDIA's Vulkan driver (libGLX_nvidia) needs, without which the loader finds no driver (seen
# on the H100 on 2026-11-27); and a Deno cache holding the one npm package the benchmarks and
# GPU tests import (@huggingface/tokenizers): the device machine has no network, and the whole
# cache (datasets included) is over the call's 64 MiB.
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
DENO_DIR=.device/deno_dir deno cache bench/main.ts bench/step.ts bench/matmul.ts bench/attention.ts $(bash bench/gpu.sh --list-tests)
# deno cache installs every package of the lockfile; keep the tokenizer only (gpu.sh runs --no-lock)
find .device/deno_dir/npm/registry.npmjs.org -mindepth 1 -maxdepth 1 ! -name @huggingface -exec rm -rf {} +
du -sh .device
