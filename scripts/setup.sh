#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with torch, Ray and this project (editable, with the
# dev tools), and Fashion-MNIST from Debian's package where apt-get can install it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stamp="$VENV/.installed-$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned: this release lies on the workplace's disk; elsewhere it comes from PyPI.
  "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

fmnist=/usr/share/datasets/fashion-mnist
if [ ! -d "$fmnist" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
    || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST will be downloaded by torchvision"
fi
