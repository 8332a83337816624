#!/usr/bin/env bash
# Set up .venv/ at the repo root with everything `rlhf` needs.
#   bash scripts/setup.sh          # the package, the labeling app and the server
#   bash scripts/setup.sh --test   # + test tools, Debian's Chromium and PostgreSQL for the app's tests
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages on a CPU
# machine. The project itself only asks for torch>=2.4, which 2.13.0 satisfies.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
extras="all"
[ "$want_test" = 1 ] && extras="all,test"
.venv/bin/python -m pip install -q -e ".[${extras}]"

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
