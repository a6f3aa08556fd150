#!/usr/bin/env bash
# Start the Temporal dev server (with its Web UI, persisted under ./data), the worker and the web app.
# Idempotent: whatever already runs (by its pid file) is reused. `scripts/down.sh` stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=data
TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}
# The dev server's UI has no sign-in and cannot turn its write actions off: it listens on
# 127.0.0.1 only, on an internal port, and staff reach it through the gate on TEMPORAL_UI_PORT
# (starter/web/ui_gate.py: a yuqing sign-in of the office or the leading group, reads only).
TEMPORAL_UI_INTERNAL_PORT=${TEMPORAL_UI_INTERNAL_PORT:-8243}
WEB_HOST=${YUQING_WEB_HOST:-127.0.0.1}
WEB_PORT=${YUQING_WEB_PORT:-8000}
mkdir -p "$DATA"

alive() { [ -f "$DATA/$1.pid" ] && kill -0 "$(cat "$DATA/$1.pid")" 2>/dev/null; }

if [ "${1:-}" = "--status" ]; then
  for s in temporal worker web ui; do
    if alive "$s"; then echo "$s: running (pid $(cat "$DATA/$s.pid"))"; else echo "$s: stopped"; fi
  done
  exit 0
fi

wait_for() {  # wait_for NAME CHECK-COMMAND...
  local name=$1; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! alive "$name"; then echo "$name exited; see $DATA/$name.log" >&2; tail -20 "$DATA/$name.log" >&2; exit 1; fi
    sleep 0.5
  done
  echo "$name did not become ready; see $DATA/$name.log" >&2
  exit 1
}

start() {  # start NAME COMMAND...
  local name=$1; shift
  if alive "$name"; then echo "$name already running (pid $(cat "$DATA/$name.pid"))"; return 1; fi
  nohup "$@" >>"$DATA/$name.log" 2>&1 &
  echo $! >"$DATA/$name.pid"
  echo "started $name (pid $!)"
}

"$BIN/yuqing" check-roster
"$BIN/yuqing" migrate
# The incidents' search attributes, from their one list (workflows/search_attributes.py).
SEARCH_ATTRIBUTES=$("$BIN/yuqing" search-attributes --cli-args)
read -ra SEARCH_ATTRIBUTE_ARGS <<<"$SEARCH_ATTRIBUTES"

if start temporal "$BIN/temporal" server start-dev \
    --db-filename "$DATA/temporal.db" --ip 127.0.0.1 --port "$TEMPORAL_PORT" \
    --ui-ip 127.0.0.1 --ui-port "$TEMPORAL_UI_INTERNAL_PORT" --ui-disable-news-fetch \
    --log-level warn \
    "${SEARCH_ATTRIBUTE_ARGS[@]}" \
    ${YUQING_CODEC_KEYS:+--ui-codec-endpoint "${YUQING_PUBLIC_URL:-http://localhost:$WEB_PORT}/codec"}; then
  :
fi
wait_for temporal "$BIN/temporal" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT"

export YUQING_TEMPORAL_ADDRESS=${YUQING_TEMPORAL_ADDRESS:-127.0.0.1:$TEMPORAL_PORT}
export YUQING_TEMPORAL_UI_URL=${YUQING_TEMPORAL_UI_URL:-http://localhost:$TEMPORAL_UI_PORT}
export YUQING_PUBLIC_URL=${YUQING_PUBLIC_URL:-http://localhost:$WEB_PORT}
export YUQING_TEMPORAL_UI_UPSTREAM=${YUQING_TEMPORAL_UI_UPSTREAM:-http://127.0.0.1:$TEMPORAL_UI_INTERNAL_PORT}
start worker "$BIN/python" worker.py || true
# `yuqing web`, as in production: YUQING_LOG_FORMAT and YUQING_WEB_METRICS_BIND apply.
start web "$BIN/yuqing" web --host "$WEB_HOST" --port "$WEB_PORT" || true
wait_for web "$BIN/python" -c "import httpx,sys; httpx.get('http://127.0.0.1:$WEB_PORT/healthz').raise_for_status()"
start ui "$BIN/uvicorn" --factory starter.web.ui_gate:create_gate --host "$WEB_HOST" --port "$TEMPORAL_UI_PORT" || true
wait_for ui "$BIN/python" -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$TEMPORAL_UI_PORT/').status_code != 401)"
sleep 1
alive worker || { echo "worker exited; see $DATA/worker.log" >&2; tail -20 "$DATA/worker.log" >&2; exit 1; }
# Search attributes (idempotent) and the digest schedules (created, or updated to the settings).
"$BIN/yuqing" setup

cat <<TXT

yuqing is running:
  submission form   http://localhost:$WEB_PORT/
  incident list     http://localhost:$WEB_PORT/incidents
  JSON API docs     http://localhost:$WEB_PORT/api/docs   (OpenAPI document: /openapi.json)
  Temporal UI       http://localhost:$TEMPORAL_UI_PORT/   (sign in on the web app first: office and leading group, read-only)
  logs              $DATA/{temporal,worker,web}.log     stop: make down
TXT
