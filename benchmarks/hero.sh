#!/usr/bin/env bash
# README.md's picture of the schedule, made again from scratch: a plan searched for `small --layers 2`
# on 2 CPU ranks over a 1 Gbit/s link, then one 2048-token prompt run with it beside the
# unsplit baseline, drawn as a timeline and written as a Perfetto trace. The plan's study log is
# written beside it (a relative path the plan records), so `isotune show` can open the study.
#
#   bash benchmarks/hero.sh               # the link emulated in the ranks (--link 1gbit): no root
#   LINK=real bash benchmarks/hero.sh     # a real shaped link (benchmarks/netns.py): root, iproute2
#
# Both take ~6 min on 2 cores. Everything lands in profiles/samples/: the real link's files under
# names with 'shaped1gbit' (the ones README.md shows), the emulated link's with 'emulated1gbit';
# what the search and the run printed goes to search-<tag>.txt and run-<tag>-2048.txt beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
S=profiles/samples
M=(--model small --layers 2 --tp 2 --dtype bfloat16)
LENS=${LENS:-512,1024,2048,4096}
TRIALS=${TRIALS:-20}
if [[ ${LINK:-emulated} == real ]]; then
  NET=(python3 benchmarks/netns.py --ranks 2 --rate 1gbit --)  # each command on a fresh testbed
  TAG=small-l2-tp2-bf16-cpu-gloo-shaped1gbit
  PROFILE=(--profile "profiles/$TAG.yaml")  # seeds each study with the cost model's best
else
  NET=()
  TAG=small-l2-tp2-bf16-cpu-gloo-emulated1gbit
  M+=(--link 1gbit)
  PROFILE=()
fi

# a rerun must not resume the last study: it would mix two days' measurements
rm -f "$S/plan-$TAG.yaml" "$S/plan-$TAG.study.log"
"${NET[@]}" isotune search "${M[@]}" --seq-lens "$LENS" --trials "$TRIALS" \
    "${PROFILE[@]}" -o "$S/plan-$TAG.yaml" | tee "$S/search-$TAG.txt"
"${NET[@]}" isotune run "${M[@]}" --plan "$S/plan-$TAG.yaml" --seq-len 2048 --compare \
    --timeline "$S/timeline-$TAG-2048.png" --trace "$S/trace-$TAG-2048.json" | tee "$S/run-$TAG-2048.txt"
