#!/usr/bin/env bash
# The example pipeline on the sample data the repo ships (data/sample/), about two minutes on two CPU cores:
# a tiny base model -> SFT -> reward model -> PPO-ptx -> evaluation of SFT against PPO.
#   bash scripts/example.sh [OUT]      (default runs/example; earlier results there are replaced)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/example}
RLHF=.venv/bin/rlhf
rm -rf "$OUT/sft" "$OUT/rm" "$OUT/ppo" "$OUT/eval"
[ -f "$OUT/base/config.json" ] || .venv/bin/python -m rlhf.core.tiny "$OUT/base" --layers 2 --width 128 \
  --texts data/sample/demonstrations_train.jsonl data/sample/pretrain.jsonl data/sample/comparisons_train.jsonl
$RLHF sft  --config configs/example/sft.yaml  --out "$OUT/sft" model="$OUT/base"
$RLHF rm   --config configs/example/rm.yaml   --out "$OUT/rm"  model="$OUT/sft/final"
$RLHF ppo  --config configs/example/ppo.yaml  --out "$OUT/ppo" policy="$OUT/sft/final" reward_model="$OUT/rm/final"
$RLHF eval --config configs/example/eval.yaml --out "$OUT/eval" \
  models="[$OUT/sft/final,$OUT/ppo/final]" baseline="$OUT/sft/final" reward_model="$OUT/rm/final"
echo "example pipeline done: metrics in $OUT/*/metrics.json, plots in $OUT/eval/"
