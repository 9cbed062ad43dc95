#!/usr/bin/env bash
# The performance table of docs/results.md, measured again: for tp 2 at 1 and 2 Gbit/s and tp 4 at
# 1 Gbit/s (shaped links of benchmarks/netns.py, one compute thread per rank), a plan searched with up to 8 chunks,
# then a fresh `bench --plan --repeats 9` on the same link. Plans, their study logs (relative
# paths), what search and bench printed and the bench JSON land in profiles/samples/perf/, and
# the table in profiles/samples/perf/table.md.
#
#   bash benchmarks/perf.sh            # ~20 min on 2 cores; needs root and iproute2 (benchmarks/netns.py)
set -euo pipefail
cd "$(dirname "$0")/.."
D=profiles/samples/perf
M=(--model small --layers 2 --dtype bfloat16)
LENS=1024,2048,4096

setting() {  # setting TP RATE
  local tag=small-l2-tp$1-bf16-shaped$2
  local net=(python3 benchmarks/netns.py --ranks "$1" --rate "$2" --)  # a fresh testbed per command
  rm -f "$D/plan-$tag.yaml" "$D/plan-$tag.study.log"  # a fresh study, not a resumed one
  "${net[@]}" isotune search "${M[@]}" --tp "$1" --seq-lens "$LENS" --trials 30 --max-chunks 8 \
      -o "$D/plan-$tag.yaml" | tee "$D/search-$tag.txt"
  "${net[@]}" isotune bench "${M[@]}" --tp "$1" --seq-lens "$LENS" --plan "$D/plan-$tag.yaml" \
      --repeats 9 --json "$D/bench-$tag.json" | tee "$D/bench-$tag.txt"
}

setting 2 1gbit
setting 2 2gbit
setting 4 1gbit
python3 benchmarks/perf_table.py "$D" | tee "$D/table.md"
