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
  "$bin" "$@" | tee -a "$TMP"
}

# The memory parts each in a process of their own: a peak RSS (VmHWM) is the
# process's, and RSS "before" must not carry what earlier parts left.
run crm_store_bench appends projection kafka
run crm_store_bench memory
run crm_store_bench vault rotation
run crm_stack_bench
for b in "$BUILD"/bench/*_bench; do
  case "$(basename "$b")" in crm_store_bench|crm_stack_bench) continue ;; esac
  [[ -x "$b" ]] && run "$(basename "$b")"
done
if ! grep -q '^figure:' "$TMP"; then
  echo "bench/run.sh: no benchmark printed a figure; $OUT left as it was" >&2
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
} >"$NEW"
chmod 644 "$NEW"
mv "$NEW" "$OUT"
echo "wrote $OUT" >&2
