#!/bin/bash
# The README's "Accuracy against the literature" table (issue 9): each row's command, one after
# another, printing its last line (test accuracy, training seconds). About 4 minutes on 2 cores
# (AMD EPYC Zen 4, 2026-12-05). usage: FASTMLP_DATA=DIR [PYTHON=python] bench/accuracy_table.sh
PY=${PYTHON:-python}
echo "== machine $(date -u +%FT%TZ)"; lscpu | grep "Model name"; grep -m2 "cpu family\|model\s" /proc/cpuinfo; uptime
while IFS= read -r args; do
  echo "== fastmlp train $args ($(date -u +%T))"
  $PY -m fastmlp train $args --no-progress 2>&1 | tail -1
done <<'LIST'
--layers 784,300,10 --activation relu --loss mse --output softmax --batch-size 32 --epochs 30 --lr 0.2 --momentum 0.9 --lr-schedule cosine
--layers 784,500,150,10 --activation relu --batch-size 64 --epochs 40 --lr 0.05 --momentum 0.9 --weight-decay 1e-4 --lr-schedule cosine --dropout 0.2 --input-dropout 0.1
--layers 784,800,10 --activation relu --batch-size 64 --epochs 40 --lr 0.05 --momentum 0.9 --lr-schedule cosine --dropout 0.3 --input-dropout 0.1
--layers 784,800,800,10 --activation relu --batch-size 64 --epochs 50 --lr 0.05 --momentum 0.9 --lr-schedule cosine --dropout 0.3 --input-dropout 0.15
--layers 784,128,10 --activation sigmoid --batch-size 1 --epochs 5 --lr 0.02 --momentum 0.8 --nesterov --lr-schedule cosine --weight-decay 3e-5 --dropout 0.03
LIST
echo "== done $(date -u +%T)"; uptime
