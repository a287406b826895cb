#!/bin/bash
# ABCC and the MLP at one equal step budget larger than the full table's 600: 2,000 steps per run,
# each entry at the lr its 600-step sweep chose on that split (../opirbench_v2_full600/sweep)
# usage (from anywhere): bash bench/results/opirbench_steps2000/run.sh random|system
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
split=$1
R=${RUNS:-${TMPDIR:-/tmp}/abcc_steps2000_runs}
if [ $split = random ]; then declare -A LR=([abcc]=0.002 [mlp]=0.001);
else declare -A LR=([abcc]=0.002 [mlp]=0.002); fi
for seed in 0 1 2; do for e in abcc mlp; do
  python -m bench.bench_abcc_design --entry $e --steps 2000 --lr ${LR[$e]} --seed $seed --split $split --tag _steps2000 --runs $R
done; done
echo ALLDONE
