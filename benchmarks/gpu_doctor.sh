#!/usr/bin/env bash
# The first thing to run when a session is lent a GPU machine (the device tool): `isotune doctor`
# on a checkout. Those machines come with a CUDA build of torch but not optuna, and they cannot
# reach a package index, so the wheels are fetched here first and carried with the tree.
#
#   bash benchmarks/gpu_doctor.sh prepare [PYVER]   # here: optuna and its deps for PYVER (3.12) into .whl/
#   bash benchmarks/gpu_doctor.sh run OUT           # there (carry .whl): install to /tmp/site, doctor into OUT
#
# `run` leaves the report (report.md, report.json, chunking.png, cuda-tests.txt, pipeline.txt) in
# OUT. Give it a folder under the device call's $OUT (`run $OUT/doctor`): doctor rewrites its
# report after every check, so even a call stopped at its time limit brings back what was found.
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
    ;;
run)
    out=${2:?usage: gpu_doctor.sh run OUT}
    # wheels for another Python must not stop the doctor: only search (optuna) needs them
    python3 -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl ||
        echo "note: the wheels in .whl did not install (prepared for another Python?): search will fail, the rest runs"
    export PYTHONPATH=/tmp/site:$PWD
    # a lent machine's call is limited (600 s): a hung step must leave time for the others
    export ISOTUNE_DOCTOR_STEP_S=${ISOTUNE_DOCTOR_STEP_S:-240}
    python3 -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.device_count())"
    python3 -m isotune doctor -o "$out"
    ;;
*)
    sed -n 2,10p "$0"
    exit 2
    ;;
esac
