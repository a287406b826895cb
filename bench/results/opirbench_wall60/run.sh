#!/bin/bash
# equal wall-clock budget: 60 s of training per run, steps = 60 s / the entry's step cost measured by
# bench_train_step (1 thread, batch 8, quiet machine). ABCC's 989 steps are those of the current
# cpu_default (no peak-drift term): 704 MLP steps x the MLP's / ABCC's step time measured in one later
# bench_train_step run (83.6 / 59.5 ms; ../train_step_cpu.md). Earlier ABCC rows used 1171 (patch 32),
# 803 (patch 16 before the extent SEI stream), 780 (with the onset gates), 828 (the film, no labels),
# 866 (relative SEI labels) and 931 (turnaround columns). ABCC's lr on the system split is the one its
# 600-step sweep chose there since v9 (1e-3; the rows before v10 used 2e-3).
# usage (from anywhere): bash bench/results/opirbench_wall60/run.sh random|system [entries, default "abcc mlp cnn gru"]
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
split=$1
R=${RUNS:-${TMPDIR:-/tmp}/abcc_wall60_runs}
declare -A STEPS=([abcc]=989 [mlp]=704 [cnn]=630 [gru]=519)
if [ $split = random ]; then declare -A LR=([abcc]=0.002 [mlp]=0.001 [cnn]=0.002 [gru]=0.002);
else declare -A LR=([abcc]=0.001 [mlp]=0.002 [cnn]=0.002 [gru]=0.001); fi
ENTRIES=${2:-abcc mlp cnn gru}
for seed in 0 1 2; do for e in $ENTRIES; do
  python -m bench.bench_abcc_design --entry $e --steps ${STEPS[$e]} --lr ${LR[$e]} --seed $seed --split $split --tag _wall60 --runs $R
done; done
echo ALLDONE
