#!/usr/bin/env bash
# Regenerate the exact-version lock files the images install from (`pip install --require-hashes`).
# Needs `uv` (pip install uv). Resolves for the images' platform, not this machine's:
# CPython 3.11 on x86_64 manylinux_2_36 (Debian bookworm, glibc 2.36; TPU v5e/v6e hosts are x86_64).
set -euo pipefail
cd "$(dirname "$0")/../.."
for flavour in cpu tpu gpu; do
  uv pip compile pyproject.toml "deploy/docker/requirements-${flavour}.in" \
    --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
    --generate-hashes \
    --custom-compile-command "deploy/docker/lock.sh" \
    --quiet -o "deploy/docker/requirements-${flavour}.lock"
done
