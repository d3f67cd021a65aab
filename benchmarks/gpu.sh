#!/usr/bin/env bash
# One prepared GPU benchmark for a single GPU (sized for one H200, within 8 minutes):
#   0. checks the GPU is seen (nvidia-smi, then torch.cuda.is_available()); exits 3 at once if not;
#      finds a Python with torch and the harness's dependencies (pip-installs the project only when
#      something is missing), and runs tests/test_gpu_path.py on the GPU when pytest is there;
#   1. trainer vs the seed-style plain loop, samples/s, seed model (emb 300, hidden 128, 2 bidirectional
#      layers): LSTM and RNN x pad 32, 128 x batch 64 x fp32, bf16 (benchmarks/throughput.py --device cuda);
#   2. the plain loop run one trial at a time, on the grid's trial (the baseline of the goal);
#   3. fused: aggregate trials/hour of the short seed-scale grid (LSTM and RNN, pad 32, batch 64, 200 steps
#      per trial, K seeds per cell, each cell one fused group of K) for K = 8, 32, 128, one process each
#      (benchmarks/fused.py grid: run_fused directly);
#   4. unfused: the same grid's trials/hour (max(2, N) trials) with 1, 4, 8 and 16 workers on the one GPU
#      (`harness run --workers N --device cuda`);
#   4b. CUDA graphs: step 3's K = 32 again with train.cuda_graph (the fused step captured and replayed;
#      drop_last), if time is left: trials/hour with vs without;
#   5. the fused training step vs K separate steps (benchmarks/fused.py step), if time is left;
#   6. writes $OUT/gpu_table.md (OUT defaults to ./gpu_out) and prints it last.
# Every step runs under `timeout`, within a total budget (GPU_BUDGET_S, default 470 s); a step that
# would not fit is skipped and says so in the table.
#
#   bash benchmarks/gpu.sh                  # exit 0: table written; 3: no GPU; 4: no usable Python/torch
#   GPU_SH_DRY=1 bash benchmarks/gpu.sh     # checks the script itself on a CPU: every step at toy sizes on
#                                           # the CPU, no GPU checks (the numbers mean nothing)
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-./gpu_out}
BUDGET=${GPU_BUDGET_S:-470}
T0=$SECONDS
left() { echo $((BUDGET - (SECONDS - T0))); }
say() { echo "[gpu.sh +$((SECONDS - T0))s] $*" | tee -a "$OUT/gpu.log" >&2; }
# timeout for a step: its own cap, or what is left of the budget minus a reserve for the table.
cap() { local l; l=$(($(left) - 20)); [ "$l" -ge 1 ] || l=1; if [ "$1" -lt "$l" ]; then echo "$1"; else echo "$l"; fi; }

DRY=${GPU_SH_DRY:-0}
if [ "$DRY" = 1 ]; then
  DEV=cpu STEPS=5 WORKERS="1 2" N_TRAIN=2000 WIDTH="embed_dim: 16, hidden_size: 16" FUSE_KS="2 4" SIZE=tiny
  THR_ARGS=(--cells rnn --pads 16 --batches 64 --precisions fp32 bf16 --graph off --steps 4 --repeats 1
            --step-rounds 2 --n-train 2000)
  FSTEP_ARGS=(--sizes tiny --cells rnn --ks 2 --steps 2 --rounds 1)
  GRAPH_K=4
else
  DEV=cuda STEPS=200 WORKERS="1 4 8 16" N_TRAIN=18000 WIDTH="embed_dim: 300, hidden_size: 128" FUSE_KS="8 32 128"
  SIZE=seed
  THR_ARGS=(--cells lstm rnn --pads 32 128 --batches 64 --precisions fp32 bf16 --graph off --steps 100
            --repeats 1 --step-rounds 5)
  FSTEP_ARGS=(--sizes seed --cells lstm rnn --ks 8 128 --steps 5 --rounds 2)
  GRAPH_K=32
fi

# ---------------------------------------------------------------------------------------- 0. checks
if [ "$DRY" != 1 ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu.sh: no GPU here: nvidia-smi is not installed (this script needs an NVIDIA GPU); nothing measured" >&2
  exit 3
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ "$DRY" = 1 ]; then
  say "GPU_SH_DRY=1: no GPU checks, toy sizes on the CPU"
elif ! timeout 30 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; then
  echo "gpu.sh: no GPU here: nvidia-smi failed or hung (see $OUT/nvidia-smi.txt); nothing measured" >&2
  exit 3
else
  say "nvidia-smi: $(timeout 30 nvidia-smi -L 2>/dev/null | head -1)"
fi

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY=""
MAIN_VENV="$(cd "$(git rev-parse --git-common-dir 2>/dev/null || echo .)/.." 2>/dev/null && pwd)/.venv/bin/python"
for cand in ${PYTHON:-} "$ROOT/.venv/bin/python" "$MAIN_VENV" python3 python; do
  if command -v "$cand" >/dev/null 2>&1 && timeout 120 "$cand" -c "import torch" >/dev/null 2>&1; then
    PY=$cand; break
  fi
done
if [ -z "$PY" ] && [ "$DRY" = 1 ]; then  # a dry run checks the script: it never installs anything
  echo "gpu.sh: dry run: no Python with torch found (set PYTHON=...); nothing installed, nothing measured" >&2
  exit 4
fi
if [ -z "$PY" ]; then
  say "no Python with torch: trying 'python3 -m pip install -e .' (pulls the CUDA build of torch; needs the network)"
  timeout "$(cap 240)" python3 -m pip install -q --timeout 20 --retries 1 -e . >> "$OUT/gpu.log" 2>&1 && PY=python3
  if [ -z "$PY" ] || ! timeout 120 "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "gpu.sh: no Python with torch, and installing it failed (see $OUT/gpu.log); nothing measured" >&2
    exit 4
  fi
fi
if [ "$DRY" != 1 ] && ! timeout 120 "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
     2>>"$OUT/gpu.log"; then
  echo "gpu.sh: no GPU seen by torch ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1)):" \
       "torch.cuda.is_available() is False; nothing measured" >&2
  exit 3
fi
if ! timeout 120 "$PY" -c "import harness.runner, harness.report" >/dev/null 2>&1; then
  if [ "$DRY" = 1 ]; then
    echo "gpu.sh: dry run: $PY cannot import the harness (dependencies missing); nothing installed" >&2
    exit 4
  fi
  say "the harness's dependencies are missing: 'pip install -e .' (keeps the torch already there)"
  timeout "$(cap 180)" "$PY" -m pip install -q --timeout 20 --retries 1 -e . >> "$OUT/gpu.log" 2>&1
  if ! timeout 120 "$PY" -c "import harness.runner" >/dev/null 2>&1; then
    echo "gpu.sh: cannot import the harness (dependencies missing, install failed: see $OUT/gpu.log)" >&2
    exit 4
  fi
fi
"$PY" -c "import torch; c = torch.cuda.is_available(); print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, '
          f'{torch.cuda.get_device_name(0) if c else \"no GPU (dry run)\"}, {torch.cuda.device_count()} GPU(s)')" \
  > "$OUT/env.txt" 2>&1
say "$(cat "$OUT/env.txt")"

if timeout 30 "$PY" -c "import pytest" >/dev/null 2>&1; then
  say "tests/test_gpu_path.py on the GPU"
  timeout "$(cap 60)" "$PY" -m pytest -q -rs tests/test_gpu_path.py \
    tests/test_train_fused.py::test_fused_trials_on_cuda_match_separate_runs \
    tests/test_fused_step.py::test_graph_replay_matches_the_eager_step_on_cuda \
    tests/test_fused_step.py::test_a_graphed_fused_run_records_what_an_eager_one_records \
    > "$OUT/test_gpu_path.txt" 2>&1
  echo "rc $?" >> "$OUT/test_gpu_path.txt"
  say "tests: $(tail -2 "$OUT/test_gpu_path.txt" | tr '\n' ' ')"
else
  echo "pytest not installed: tests/test_gpu_path.py not run" > "$OUT/test_gpu_path.txt"
fi

# ---------------------------------------------------------------------------------------- 1. trainer vs plain
say "throughput: trainer vs plain loop"
timeout "$(cap 90)" "$PY" benchmarks/throughput.py --device "$DEV" --threads 4 "${THR_ARGS[@]}" \
  --json "$OUT/throughput.json" > "$OUT/throughput.md" 2>> "$OUT/gpu.log"
echo "rc $?" > "$OUT/throughput.rc"

# ---------------------------------------------------------------------------------------- 2. baseline
say "baseline: the plain loop, one trial of $STEPS steps at a time"
timeout "$(cap 60)" "$PY" - "$STEPS" "$DEV" "$N_TRAIN" > "$OUT/baseline.json" 2>> "$OUT/gpu.log" <<'EOF'
import json, sys, tempfile
sys.path.insert(0, "benchmarks")
import torch
from throughput import as_lists, config, plain_loop
from harness import data as data_mod
from harness.config import config_from_dict
steps, device, n_train, cache = int(sys.argv[1]), torch.device(sys.argv[2]), int(sys.argv[3]), tempfile.mkdtemp()
ds = data_mod.load(config_from_dict(config("lstm", 32, 1, 64, 0, n_train)).data, cache, 32)
lists = {s: as_lists(getattr(ds, s)) for s in ("train", "dev", "test")}
out = {}
for cell in ("lstm", "rnn"):
    plain_loop(lists, ds, cell, 5, 64, device)  # warm-up
    out[cell] = min(plain_loop(lists, ds, cell, steps, 64, device)["total"] for _ in range(2))
print(json.dumps(out))
EOF

# ---------------------------------------------------------------------------------------- 3. fused
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: > "$OUT/fused.tsv"
# fused_grid K LABEL [fused.py args]: one fused.py grid run of K seeds per cell, a row LABEL of fused.tsv.
fused_grid() {
  local K=$1 LABEL=$2 LIMIT S E RC
  shift 2
  LIMIT=$(cap $((30 + K / 2)))
  if [ "$LIMIT" -lt 20 ]; then
    say "fused: $LABEL skipped (budget)"; printf '%s\t%s\tskipped\t0\n' "$LABEL" "$((2 * K))" >> "$OUT/fused.tsv"
    return
  fi
  say "fused: $LABEL: K=$K, $((2 * K)) trials in 2 fused groups, one process (limit ${LIMIT}s)"
  S=$(date +%s.%N)
  timeout "$LIMIT" "$PY" benchmarks/fused.py grid --k "$K" --steps "$STEPS" --device "$DEV" --size "$SIZE" \
    --n-train "$N_TRAIN" --threads 4 --cache "$WORK/fcache" "$@" > "$OUT/fused-$LABEL.jsonl" 2>> "$OUT/gpu.log"
  RC=$?
  E=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\n' "$LABEL" "$((2 * K))" "$RC" "$("$PY" -c "print($E - $S)")" >> "$OUT/fused.tsv"
}
for K in $FUSE_KS; do
  fused_grid "$K" "$K"
done

# ---------------------------------------------------------------------------------------- 4. worker scaling
: > "$OUT/scaling.tsv"
for N in $WORKERS; do
  K=$((N > 2 ? N / 2 : 1))  # seeds per cell: max(2, N) trials in all
  LIMIT=$(cap $((25 + 2 * N)))
  if [ "$LIMIT" -lt 20 ]; then
    say "scaling: $N workers skipped (budget)"; printf '%s\t%s\t%s\t%s\n' "$N" "$((2 * K))" skipped 0 >> "$OUT/scaling.tsv"
    continue
  fi
  SEEDS=$(seq -s, 0 $((K - 1)))
  cat > "$WORK/scale.yaml" <<EOF
name: gpu-scale
data: {kind: synthetic, pad_size: 32, synth: {n_train: $N_TRAIN}}
model: {$WIDTH, num_layers: 2, bidirectional: true, dropout: 0.3}
train: {batch_size: 64, lr: 0.001, epochs: 7, max_steps: $STEPS, eval_every: 100}
grid: {cell: [lstm, rnn], seed: [$SEEDS]}
EOF
  DIR="$WORK/scale-$N"
  mkdir -p "$DIR"
  [ -d "$WORK/cache" ] && cp -r "$WORK/cache" "$DIR/cache"  # the synthetic data and encodings, made once
  say "scaling: $N worker(s), $((2 * K)) trials (limit ${LIMIT}s)"
  S=$(date +%s.%N)
  timeout "$LIMIT" "$PY" -m harness run "$WORK/scale.yaml" --out "$DIR" --workers "$N" --device "$DEV" --quiet \
    >> "$OUT/gpu.log" 2>&1
  RC=$?
  E=$(date +%s.%N)
  [ -d "$WORK/cache" ] || cp -r "$DIR/cache" "$WORK/cache"
  printf '%s\t%s\t%s\t%s\t%s\n' "$N" "$((2 * K))" "$RC" "$("$PY" -c "print($E - $S)")" \
    "$DIR" >> "$OUT/scaling.tsv"
  "$PY" -c "
import sys, pandas as pd, harness.records as r
t = r.load(sys.argv[1])['runs']; t.to_csv(sys.argv[2], index=False)" "$DIR" "$OUT/scale-$N-runs.csv" \
    2>> "$OUT/gpu.log" || true
done

# ---------------------------------------------------------------------------------------- 4b. CUDA graph
fused_grid "$GRAPH_K" "$GRAPH_K+graph" --cuda-graph  # as step 3's K=$GRAPH_K, the step in a CUDA graph

# ---------------------------------------------------------------------------------------- 5. fused step
say "fused: training step, fused vs K separate"
timeout "$(cap 45)" "$PY" benchmarks/fused.py step --device "$DEV" --threads 4 "${FSTEP_ARGS[@]}" \
  > "$OUT/fused_step.md" 2>> "$OUT/gpu.log"
echo "rc $?" >> "$OUT/fused_step.md"

# ---------------------------------------------------------------------------------------- 6. the table
"$PY" - "$OUT" "$STEPS" "$DRY" > "$OUT/gpu_table.md" 2>> "$OUT/gpu.log" <<'EOF'
import datetime as dt, json, os, sys
import pandas as pd
out, steps, dry = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
p = lambda name: os.path.join(out, name)
lines = ["# GPU benchmark (benchmarks/gpu.sh)" + (" -- DRY RUN on the CPU, toy sizes: not a measurement" if dry else ""),
         "", open(p("env.txt")).read().strip(), ""]
lines += ["## 1. Trainer vs plain loop (samples/s over whole trials; median of the repeats)", ""]
tp = open(p("throughput.md")).read().strip() if os.path.exists(p("throughput.md")) else ""
rc = open(p("throughput.rc")).read().strip() if os.path.exists(p("throughput.rc")) else "?"
lines += [tp or "(no rows)", "", f"(throughput.py {rc}; rc 124 = stopped by its time limit: the rows above are those it finished)", ""]
base = {}
try:
    base = json.load(open(p("baseline.json")))
except Exception as e:
    lines += [f"baseline not measured: {e}", ""]
lines += ["## 2-3. Aggregate grid throughput on the one GPU", ""]
if base:
    per = sum(base.values()) / len(base)
    plain_tph = 3600 / per
    lines += [f"Plain loop, one trial at a time ({steps} steps, seed model, pad 32, batch 64, LSTM/RNN mean): "
              f"{per:.1f} s per trial = **{plain_tph:,.0f} trials/hour** (trial only: no start-up counted)", ""]
lines += ["| workers | trials done / planned | wall (s) | trials/hour (wall, start-up included) | "
          "trials/hour (first trial start to last end) | mean trial wall_s | x plain loop (wall) | rc |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
unfused_tph = []
for line in open(p("scaling.tsv")):
    f = line.rstrip("\n").split("\t")
    n, planned, rc = f[0], f[1], f[2]
    if rc == "skipped":
        lines.append(f"| {n} | 0 / {planned} | | | | | | skipped (time budget) |")
        continue
    wall = float(f[3])
    try:
        runs = pd.read_csv(p(f"scale-{n}-runs.csv"))
        runs = runs[runs["status"] == "complete"]
        done = len(runs)
        t0 = [dt.datetime.fromisoformat(s).timestamp() for s in runs["started_at"]]
        span = max(a + w for a, w in zip(t0, runs["wall_s"])) - min(t0)
        steady = f"{done / span * 3600:,.0f}"
        mean_wall = f"{runs['wall_s'].mean():.1f}"
    except Exception:
        done, steady, mean_wall = 0, "", ""
    tph = done / wall * 3600 if wall > 0 else 0
    unfused_tph.append(tph)
    x = f"{tph / plain_tph:.1f}x" if base and done else ""
    lines.append(f"| {n} | {done} / {planned} | {wall:.0f} | {tph:,.0f} | {steady} | {mean_wall} | {x} | {rc} |")
best_unfused = max(unfused_tph, default=0.0)
lines += ["", f"## Fused trials (run_fused in one process; {steps} steps per trial, the same grid, K seeds per cell)", "",
          "| K | trials done / planned | wall (s, start-up included) | trials/hour | x plain loop | "
          "x best unfused workers | rc |", "| --- | --- | --- | --- | --- | --- | --- |"]
fused_tph = {}
for line in open(p("fused.tsv")):
    f = line.rstrip("\n").split("\t")
    k, planned, rc = f[0], f[1], f[2]
    if rc == "skipped":
        lines.append(f"| {k} | 0 / {planned} | | | | | skipped (time budget) |")
        continue
    done, wall = 0, float(f[3])
    try:
        for rec in map(json.loads, open(p(f"fused-{k}.jsonl"))):
            if "group" in rec:
                done += rec["complete"]
    except Exception:  # noqa: BLE001
        pass
    tph = done / wall * 3600 if wall > 0 else 0
    xp = f"{tph / plain_tph:.1f}x" if base and done else ""
    xu = f"{tph / best_unfused:.1f}x" if best_unfused and done else ""
    lines.append(f"| {k} | {done} / {planned} | {wall:.0f} | {tph:,.0f} | {xp} | {xu} | {rc} |")
    fused_tph[k] = tph
for k, tph in fused_tph.items():
    base = fused_tph.get(k.removesuffix("+graph"), 0.0)
    if k.endswith("+graph") and tph and base:
        lines += ["", f"CUDA graph (train.cuda_graph; drop_last), fused K={k.removesuffix('+graph')}: "
                  f"{tph:,.0f} trials/hour vs {base:,.0f} eager = **{tph / base:.2f}x**"]
fs = open(p("fused_step.md")).read().strip() if os.path.exists(p("fused_step.md")) else "(not run)"
lines += ["", "Fused training step vs K separate steps (benchmarks/fused.py step; samples/s, median of rounds):", "",
          fs, "",
          "Goals: fused grid throughput on one H200 >= 10x the plain loop run one trial at a time, and >= 3x the "
          "best unfused multi-process setting.", "",
          "tests on the GPU: " + " ".join(open(p("test_gpu_path.txt")).read().split()[-12:])]
print("\n".join(lines))
EOF
say "done in $((SECONDS - T0)) s; table: $OUT/gpu_table.md"
echo
cat "$OUT/gpu_table.md"
