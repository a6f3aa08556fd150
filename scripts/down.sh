#!/usr/bin/env bash
# Stop what scripts/up.sh started, by its pid files and nothing broader.
set -uo pipefail
cd "$(dirname "$0")/.."
for name in ui web worker temporal; do
  pidfile="data/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done
