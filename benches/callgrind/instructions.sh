#!/bin/bash
# Instructions the server executes per alert, counted by callgrind: a
# figure that does not move with the machine's load (unlike alerts/s or
# CPU seconds on a shared 2-core machine), for comparing two builds of the
# server's own code. It counts user space only: system calls, fsync and
# wake-ups are not in it, so confirm a gain with wrk or `cargo bench`.
#
#   benches/callgrind/instructions.sh [BINARY] [ALERTS]
#
# Needs valgrind, python3 and curl. Starts BINARY (default
# target/release/firstline) on a fresh SQLite database, sends 200 alerts to
# warm up, then counts ALERTS (default 3000) new single-alert webhooks
# from 16 connections until incidents have caught up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-$here/../../target/release/firstline}")
alerts=${2:-3000}
port=${PORT:-18082}
dir=$(mktemp -d /tmp/firstline-callgrind.XXXX)
cd "$dir"
FIRSTLINE_SERVER__LISTEN=127.0.0.1:$port FIRSTLINE_LOG__LEVEL=warn FIRSTLINE_CHAT__CONSOLE_STDIN=false \
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" --instr-atstart=no \
  "$bin" serve > server.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break; sleep 0.2; done
python3 "$here/send.py" "$port" 200
sleep 2
callgrind_control -i on $pid > /dev/null 2>&1
python3 "$here/send.py" "$port" "$alerts"
backlog() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^firstline_intake_backlog /{print $2}'; }
for _ in $(seq 200); do [ "$(backlog)" = "0" ] && break; sleep 0.5; done
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
callgrind_control -d $pid > /dev/null 2>&1
kill $pid; wait $pid 2>/dev/null || true
out=$(ls -S "$dir"/callgrind.out* | head -1)
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
runs=$(awk '/^firstline_intake_apply_runs_total /{print $2}' <<< "$metrics")
applied=$(awk '/^firstline_intake_applied_alerts_total /{print $2}' <<< "$metrics")
echo "binary: $bin"
echo "instructions: $total for $alerts alerts, $((total / alerts)) per alert"
echo "incident-making: $applied alerts in $runs runs (warm-up included)"
echo "profile: $out (callgrind_annotate --inclusive=yes $out | less)"
