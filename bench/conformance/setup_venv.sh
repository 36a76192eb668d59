#!/usr/bin/env bash
# Build the engines' venv (default /work/venv-engines; the first argument overrides it) with vLLM and SGLang at the
# versions of the goldens. Python 3.11 or 3.12. About 7 GB (torch with its CUDA libraries) and a few minutes.
set -euo pipefail
VENV=${1:-/work/venv-engines}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3.11}
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --no-deps vllm==0.33.0 sglang==0.5.23
"$VENV/bin/pip" install -r "$HERE/requirements-engines.txt"
"$VENV/bin/python" -c "import vllm.v1.core.kv_cache_manager, sglang.srt.mem_cache.radix_cache; print('engines import')"
