#!/usr/bin/env bash
# Issue #15 end to end: Cu, Au and Cu-Au with SevenNet-0 as the reference, EMT pretraining
# against training from scratch. Every step resumes or skips what is complete, so the whole
# experiment (about 15 CPU-core-hours on the 2-core machine: 6 of SevenNet-0 reference MD, 1 of
# pretraining, 3.5 of learning curve, 1.2 of active learning, the rest rollouts, pricing and
# benchmarks) is this one command, run again after an interruption or in the next session:
#
#   scripts/experiment-sevennet-cuau.sh
#   STEP=reference|pretrain|curve|learn|liquid|generating|long|stress|heldout|speed
#                                                       (run one step only)
#   STEP=status                                         (where each step stands; runs nothing)
#
# Steps (each writes under runs/mlip, the paths the recipes name):
#   reference  SevenNet-0 MD: the held-out set (data/sevennet-cuau-heldout.yaml) and the target
#              set (data/sevennet-cuau.yaml), one writer per core; then NVE continuations of the
#              held-out frames, the validation pairs (scripts/nve_continuations.py)
#   pretrain   EMT data and the pretrained model (training/pretrain-emt-cuau.yaml)
#   curve      learning curve, pretrained against scratch at 5-100 % of the target data, the two
#              starts side by side on the two cores (scripts/learning_curve.py)
#   learn      active learning on SevenNet-0 from the pretrained 25 % run (two iterations of 30
#              labelled states, training/sevennet-cuau-learn.yaml), added to the curve's table
#              and figure against the 100 % runs
#   liquid     two more liquid Cu trajectories (data/sevennet-cuau-liquid.yaml), the shipped
#              model fine-tuned with them (training/sevennet-cuau-liquid.yaml), its held-out table
#   generating a generating function for the shipped model distilled from the modified midpoint
#              map (training/sevennet-cuau-modified.yaml): its symplectic strides
#   long       longer held-out references of the crystal and the melt (3 and 6 more replicas:
#              data/sevennet-cuau-heldout-crystal.yaml, -liquid.yaml), one writer per core; the
#              held-out step judges those two conditions against them once they are complete
#   stress     overlapping atoms and Lindemann index at 1500 and 2500 K and under compression,
#              the 100 % models (scripts/stress_test.py)
#   heldout    the pretrained 100 % model from each held-out reference's first frame, Langevin
#              as the reference, 32 and 64 fs, judged by flashmd evaluate with SevenNet-0
#              pricing the rollout's frames (SYMPLECTIC=learned|midpoint|modified: symplectic
#              strides; CORRECTOR=K: corrector strides of K solver iterations, with SYMPLECTIC;
#              STRIDES_PS=8: simulated ps per replica)
#   speed      flashmd bench speed against MD with SevenNet-0, 32 and 108 atoms (CORRECTOR=K:
#              rows of corrector strides too)
set -euo pipefail
out=runs/mlip
step=${STEP:-all}
export OMP_NUM_THREADS=1
mkdir -p "$out"
curve=$out/learning-curve
# MODEL=... HELDOUT_DIR=... SPEED_TABLE=...: the held-out and speed steps of another model
# (the shipped one: MODEL=runs/mlip/learn/iter-02/train/last.pt)
model=${MODEL:-$curve/pretrained-1/last.pt}
heldout=${HELDOUT_DIR:-$out/heldout}

want() { [ "$step" = all ] || [ "$step" = "$1" ]; }

if [ "$step" = status ]; then
    for store in "$out/sevennet-cuau-heldout.zarr" "$out/sevennet-cuau-heldout-nve.zarr" \
        "$out/sevennet-cuau.zarr" "$out/sevennet-cuau-heldout-crystal.zarr" \
        "$out/sevennet-cuau-heldout-liquid.zarr" \
        runs/pretrain-emt-cuau.zarr; do
        if [ -d "$store" ]; then
            flashmd inspect "$store" | grep -E "^(store|trajectories)"
        else
            echo "store        $store: not started"
        fi
    done
    for run in runs/train/pretrain-emt-cuau "$curve"/*-* runs/train/sevennet-cuau-modified; do
        [ -f "$run/train.csv" ] || continue
        echo "training     $run: step $(tail -n 1 "$run/train.csv" | cut -d, -f1)"
    done
    [ -f "$out/learn/learn.json" ] && echo "learning     $out/learn: $(cat "$out/learn/learn.json")"
    for file in learning-curve.md stress.md speed.md; do
        [ -f "$out/$file" ] && echo "result       $out/$file"
    done
    exit 0
fi

if want reference; then
    # one writer per core: the held-out set, then a second writer on the target set (the store's
    # claims split its trajectories between the two)
    target=(data/sevennet-cuau.yaml -o "$out/sevennet-cuau.zarr" --quiet)
    (flashmd generate data/sevennet-cuau-heldout.yaml -o "$out/sevennet-cuau-heldout.zarr" \
        --quiet && flashmd generate "${target[@]}") &
    flashmd generate "${target[@]}"
    wait
    flashmd generate "${target[@]}"  # completes whatever a writer that died left partial
    # the validation pairs: NVE continuations of the held-out (Langevin) frames, one per ps
    python scripts/nve_continuations.py "$out/sevennet-cuau-heldout.zarr" \
        -o "$out/sevennet-cuau-heldout-nve.zarr" --every-fs 1000 --duration-fs 96 --quiet
fi

if want pretrain; then
    flashmd generate data/pretrain-emt-cuau.yaml -o runs/pretrain-emt-cuau.zarr --quiet
    if [ -f runs/train/pretrain-emt-cuau/state.pt ]; then
        flashmd train training/pretrain-emt-cuau.yaml --resume --threads 1 --quiet
    else
        flashmd train training/pretrain-emt-cuau.yaml --threads 1 --quiet
    fi
fi

if want curve; then
    # the two starts in parallel, one thread each; then the table and figure of both
    for start in pretrained scratch; do
        python scripts/learning_curve.py training/sevennet-cuau.yaml --starts "$start" \
            --out "$curve" > "$out/curve-$start.log" 2>&1 &
    done
    wait
    python scripts/learning_curve.py training/sevennet-cuau.yaml --no-train --out "$curve" \
        --figure docs/learning-curve-sevennet-cuau.png | tee "$out/learning-curve.md"
fi

if want learn; then
    flashmd learn training/sevennet-cuau-learn.yaml --threads 1 --quiet
    python scripts/learning_curve.py training/sevennet-cuau.yaml --no-train --out "$curve" \
        --learned training/sevennet-cuau-learn.yaml --figure docs/learning-curve-sevennet-cuau.png \
        | tee "$out/learning-curve.md"
fi

if want liquid; then
    # more liquid Cu (1500 and 2300 K) for the shipped model, whose held-out liquid diffused at a
    # quarter of the reference's rate; then its held-out table
    flashmd generate data/sevennet-cuau-liquid.yaml -o "$out/sevennet-cuau-liquid.zarr" \
        --workers 2 --quiet
    if [ -f runs/train/sevennet-cuau-liquid/state.pt ]; then
        flashmd train training/sevennet-cuau-liquid.yaml --resume --threads 1 --quiet
    else
        flashmd train training/sevennet-cuau-liquid.yaml --threads 1 --quiet
    fi
    STEP=heldout MODEL=runs/train/sevennet-cuau-liquid/last.pt HELDOUT_DIR="$out/heldout-liquid" \
        bash "$0"
fi

if want generating; then
    if [ -f runs/train/sevennet-cuau-modified/state.pt ]; then
        flashmd train training/sevennet-cuau-modified.yaml --resume --threads 1 --quiet
    else
        flashmd train training/sevennet-cuau-modified.yaml --threads 1 --quiet
    fi
fi

if want long; then
    flashmd generate data/sevennet-cuau-heldout-crystal.yaml \
        -o "$out/sevennet-cuau-heldout-crystal.zarr" --quiet &
    flashmd generate data/sevennet-cuau-heldout-liquid.yaml \
        -o "$out/sevennet-cuau-heldout-liquid.zarr" --quiet
    wait
fi

# the reference store of a held-out temperature: the longer one once all its recipe's
# trajectories are complete
complete() {  # recipe store
    python - "$1" "$2" <<'PY'
import sys
from flashmd.data.recipes import load_recipe
from flashmd.data.store import TrajectoryStore
recipe, location = load_recipe(sys.argv[1]), sys.argv[2]
try:
    store = TrajectoryStore.open(location)
except Exception:
    sys.exit(1)
done = all(t.id in store and store[t.id].status == "complete" for t in recipe.tasks())
sys.exit(0 if done else 1)
PY
}
reference_of() {
    local kind=""
    case $1 in
        600) kind=crystal ;;
        1700) kind=liquid ;;
    esac
    if [ -n "$kind" ] && complete "data/sevennet-cuau-heldout-$kind.yaml" \
        "$out/sevennet-cuau-heldout-$kind.zarr"; then
        echo "$out/sevennet-cuau-heldout-$kind.zarr"
    else
        echo "$out/sevennet-cuau-heldout.zarr"
    fi
}

if want stress; then
    python scripts/stress_test.py "pretrained=$model" "scratch=$curve/scratch-1/last.pt" \
        --recipe data/sevennet-cuau-stress.yaml --temperatures 1500 2500 --strides 400 \
        --out "$out/stress" | tee "$out/stress.md"
fi

if want heldout; then
    # the temperatures of the held-out conditions (data/sevennet-cuau-heldout.yaml)
    mkdir -p "$heldout"
    for stride in 32 64; do
        for temperature in 600 1700 450; do
            name=T$temperature-${stride}fs
            reference=$(reference_of "$temperature")
            flashmd md --start-from "$reference" --temperature-K "$temperature" \
                --ensemble langevin --friction-per-fs 0.01 --model "$model" --stride-fs "$stride" \
                --strides $((${STRIDES_PS:-8} * 1000 / stride)) --threads 1 --quiet \
                ${SYMPLECTIC:+--symplectic "$SYMPLECTIC"} \
                ${CORRECTOR:+--corrector-iterations "$CORRECTOR"} -o "$heldout/$name.zarr"
            flashmd evaluate --reference "$reference" \
                --rollout "$heldout/$name.zarr" --energy reference \
                --out "$heldout/report-$name" --quiet > "$heldout/$name.txt" || true
        done
    done
    cat "$heldout"/T*fs.txt
fi

if want speed; then
    flashmd bench speed --model "$model" --reference sevennet-0 --lattice-a 3.6125 --sizes 2 3 \
        --stride-fs 16 32 64 --equilibration-fs 100 --devices cpu --threads 1 \
        ${CORRECTOR:+--corrector-iterations $CORRECTOR} \
        | tee "${SPEED_TABLE:-$out/speed.md}"
fi
