#!/usr/bin/env bash
# The browser test drives Debian's Chromium (never a downloaded browser). Install it if missing.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "chromium is missing: install Debian's package with 'apt-get install -y chromium' (needs root)" >&2
  exit 1
fi
echo "installing Debian's chromium for the browser test"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
