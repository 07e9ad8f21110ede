#!/bin/bash
# Which syncs held up the intake journal's: records every fsync and
# fdatasync on the machine (with the thread that made it) while COMMAND
# runs, then prints each thread kind's sync latencies and, for every
# journal `fdatasync` over 20 ms, the fsyncs that overlapped it (SQLite's
# commits and checkpoints run on `sqlx-sqlite-worker` threads).
#
#   benches/syncs/record.sh target/release/deps/intake-HASH --sqlite-only
#
# Needs perf (Debian's linux-perf) with tracepoints readable (root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp /tmp/firstline-syncs.XXXX)
perf record -a -o "$out" \
  -e syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync \
  -e syscalls:sys_enter_fsync,syscalls:sys_exit_fsync \
  -- "$@"
perf script -i "$out" 2>/dev/null | python3 "$here/overlap.py"
echo "recording: $out"
