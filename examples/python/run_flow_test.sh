#!/usr/bin/env bash
# Runs crm_flow.py against a fresh stack (embedded broker and the four
# services on free loopback ports). Usage: run_flow_test.sh BUILD_DIR
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
PIDS=()
# The broker and the services exit 0 on SIGTERM: any other status (a crash
# in shutdown, a leak the sanitizers report) fails the test, with the logs.
cleanup() {
  local rc=$? p status failed=0
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    status=0
    wait "$p" || status=$?
    if [[ $status -ne 0 ]]; then
      echo "run_flow_test.sh: process $p exited with status $status" >&2
      failed=1
    fi
  done
  if [[ $failed -eq 1 ]]; then
    for f in "$WORK"/*.log; do echo "--- $f"; tail -20 "$f"; done
    [[ $rc -eq 0 ]] && rc=1
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# Drawn below the kernel's ephemeral range (it starts at 32768): a port
# bind(0) hands out may be taken by an outgoing connection (a Kafka
# client's) before the service binds it. Never one of the arguments: the
# ports drawn before, whose services may not have bound them yet.
free_port() {
  /usr/bin/python3 -c '
import random, socket, sys
taken = {int(p) for p in sys.argv[1:]}
for _ in range(100):
    port = random.randint(20000, 32000)
    if port in taken:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port")' "$@"
}

"$BUILD/tools/crm-broker" --address-file="$WORK/broker" >"$WORK/broker.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -s "$WORK/broker" ]] && break; sleep 0.1; done
BROKERS="$(cat "$WORK/broker")"

DEV_KEY="crm-dev-only-hs256-key--do-not-use-in-production"
declare -A PORT
for svc in leads sales service-desk analytics; do
  PORT[$svc]="$(free_port "${PORT[@]}")"
  # The development token key (libs/common/auth/dev_key.h): loopback only.
  CRM_JWT_HS256_KEY="$DEV_KEY" "$BUILD/services/$svc/crm-$svc" --listen="127.0.0.1:${PORT[$svc]}" \
    --data-dir="$WORK/$svc" --brokers="$BROKERS" >"$WORK/$svc.log" 2>&1 &
  PIDS+=($!)
done
for svc in leads sales service-desk analytics; do
  up=""
  for _ in $(seq 300); do
    if "$BUILD/tools/crmctl" health "127.0.0.1:${PORT[$svc]}" >/dev/null 2>&1; then
      up=1
      break
    fi
    sleep 0.1
  done
  # A service that did not come up is named, with its log, not left for the
  # flow to fail on later with an unrelated-looking error.
  if [[ -z "$up" ]]; then
    echo "run_flow_test.sh: crm-$svc did not become healthy on port ${PORT[$svc]}" >&2
    tail -20 "$WORK/$svc.log" >&2
    exit 1
  fi
done

# The flow mints its own token with the same key (and checks that a call
# without one is refused).
if ! CRM_JWT_HS256_KEY="$DEV_KEY" CRM_LEADS="127.0.0.1:${PORT[leads]}" CRM_SALES="127.0.0.1:${PORT[sales]}" \
  CRM_SERVICE_DESK="127.0.0.1:${PORT[service-desk]}" CRM_ANALYTICS="127.0.0.1:${PORT[analytics]}" \
  /usr/bin/python3 "$HERE/crm_flow.py"; then
  for f in "$WORK"/*.log; do echo "--- $f"; tail -20 "$f"; done
  exit 1
fi
