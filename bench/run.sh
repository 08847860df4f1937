#!/usr/bin/env bash
# Runs every benchmark and writes bench/RESULTS.md: the figures with the
# machine they were measured on. Usage: bench/run.sh BUILD_DIR
set -euo pipefail
BUILD="${1:-build}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/RESULTS.md"
TMP="$(mktemp)"
trap 'rm -f "$TMP"' EXIT

run() {
  local bin="$BUILD/bench/$1"; shift
  # A missing benchmark would leave its figures out of RESULTS.md unnoticed.
  if [[ ! -x "$bin" ]]; then
    echo "bench/run.sh: no $bin; build first (./crm build)" >&2
    exit 1
  fi
  echo "== $(basename "$bin") $*" >&2
  # A benchmark that hangs (a stalled broker, a stuck stack) fails the run.
  if ! timeout 480 "$bin" "$@" | tee -a "$TMP"; then
    echo "bench/run.sh: $(basename "$bin") $* failed or ran over 8 minutes" >&2
    exit 1
  fi
}

# The memory parts each in a process of their own: a peak RSS (VmHWM) is the
# process's, and RSS "before" must not carry what earlier parts left. The
# rebuild too: the CPU it is measured by must not go to closing the
# databases of the parts before it.
run crm_store_bench appends projection
run crm_store_bench kafka
run crm_store_bench memory
run crm_store_bench vault rotation
run crm_stack_bench
for b in "$BUILD"/bench/*_bench; do
  case "$(basename "$b")" in crm_store_bench|crm_stack_bench) continue ;; esac
  [[ -x "$b" ]] && run "$(basename "$b")"
done
# The value of the figure labelled exactly $1; empty when none printed it.
value() {
  grep '^figure:' "$TMP" | sed -E 's/^figure: +//' |
    awk -v label="$1" '{v=$(NF-1); $NF=""; $(NF-1)=""; sub(/ +$/, ""); if ($0 == label) print v}'
}
# The figures the targets are judged by: a benchmark that failed, or a
# figure renamed, must not leave RESULTS.md without them unnoticed.
TARGETS=(
  "CaptureLead / raw echo|>=|50|%"
  "ChangeOpportunityStage / raw echo|>=|50|%"
  "leads import, use case in process|>=|100000|leads/s"
  "360 read p99 (1,000-event customer, in process)|<|1000|us"
  "rebuild analytics from Kafka|>=|200000|events/s"
  "rebuild / raw consume|>=|50|%"
)
for t in "${TARGETS[@]}"; do
  label="${t%%|*}"
  if [[ -z "$(value "$label")" ]]; then
    echo "bench/run.sh: no figure \"$label\"; $OUT left as it was" >&2
    exit 1
  fi
done
if grep -q '^figure:.* errors ' "$TMP"; then
  echo "bench/run.sh: calls failed during the run (the errors lines above); $OUT left as it was" >&2
  exit 1
fi

# Written whole or not at all: renamed over the old file on its filesystem.
NEW="$(mktemp "$OUT.XXXXXX")"
trap 'rm -f "$TMP" "$NEW"' EXIT
{
  echo "# Benchmark results"
  echo
  echo "Written by \`./crm bench\` on $(date -u +%Y-%m-%d). Machine: $(nproc) cores"
  echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB memory, $(uname -sr)."
  echo
  echo "| figure | value | unit |"
  echo "| --- | ---: | --- |"
  grep '^figure:' "$TMP" | sed -E 's/^figure: +//' |
    awk '{unit=$NF; value=$(NF-1); $NF=""; $(NF-1)=""; sub(/ +$/, ""); printf "| %s | %s | %s |\n", $0, value, unit}'
  echo
  echo "Raw limits (RocksDB synced writes, gRPC echo, librdkafka produce/consume) are"
  echo "measured in the same run as the figures that depend on them."
  echo
  echo "## Targets"
  echo
  echo "| figure | target | measured | |"
  echo "| --- | --- | ---: | --- |"
  for t in "${TARGETS[@]}"; do
    IFS='|' read -r label op bound unit <<<"$t"
    v="$(value "$label")"
    met="$(awk -v v="$v" -v op="$op" -v b="$bound" 'BEGIN { print ((op == ">=" ? v >= b : v < b) ? "met" : "missed") }')"
    echo "| $label | $op $bound $unit | $v | $met |"
  done
} >"$NEW"
chmod 644 "$NEW"
mv "$NEW" "$OUT"
echo "wrote $OUT" >&2
