#!/usr/bin/env bash
# Rounds of the page's CPU benchmark against llama.cpp on a noisy machine: each round runs
# llama.cpp (2 threads), the page (`tests/e2e/bench.mjs dist cpu`), the open test
# (`tests/e2e/open.mjs dist`) and llama.cpp again, then waits; the page's ratios are taken per
# round against that round's llama.cpp. Needs `./dev build` (dist/) and `./dev test` or
# `./dev bench` once (tools/llama-venv, the model).
# Usage: scripts/bench_rounds.sh [ROUNDS] [PAUSE_S] > rounds.log; python3 scripts/bench_rounds.py rounds.log
set -u
cd "$(dirname "$0")/.."
M=www/models/SmolLM2-135M-Instruct.Q4_1.gguf
for i in $(seq 1 "${1:-14}"); do
  echo "== $(date -u +%H:%M:%S)"
  echo "llama $(tools/llama-venv/bin/python scripts/bench_llamacpp.py "$M" 216 128 2 2>&1 | tail -1)"
  echo "page $(timeout 900 node tests/e2e/bench.mjs dist cpu 2>&1 | tail -1)"
  echo "open $(timeout 900 node tests/e2e/open.mjs dist 2>&1 | tail -1)"
  echo "llama $(tools/llama-venv/bin/python scripts/bench_llamacpp.py "$M" 216 128 2 2>&1 | tail -1)"
  sleep "${2:-150}"
done
