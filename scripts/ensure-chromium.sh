#!/usr/bin/env bash
# The browser test drives Debian's Chromium (never a downloaded browser). Install it if missing.
# Elsewhere (macOS: `brew install --cask chromium`) point BIOSCAN_CHROMIUM at the binary.
set -euo pipefail
if [ -n "${BIOSCAN_CHROMIUM:-}" ]; then
  [ -x "$BIOSCAN_CHROMIUM" ] && exit 0
  echo "BIOSCAN_CHROMIUM=$BIOSCAN_CHROMIUM is not an executable" >&2
  exit 1
fi
command -v chromium >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and there is no apt-get here. On macOS: brew install --cask chromium," >&2
  echo "then export BIOSCAN_CHROMIUM=/Applications/Chromium.app/Contents/MacOS/Chromium" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "chromium is missing: install Debian's package with 'apt-get install -y chromium' (needs root)" >&2
  exit 1
fi
echo "installing Debian's chromium for the browser test"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
