#!/usr/bin/env bash
# The split topology on loopback: nats-server, then `authkeys command`, `authkeys project` and
# `authkeys api` as three processes that talk only over NATS (what `authkeys serve` runs in one).
# `make run-split`. Ctrl-C stops the front first (api), then project and command, then nats-server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${DATA_DIR:-$ROOT/.data-split}"
NATS_SERVER="${NATS_SERVER:?NATS_SERVER must point at nats-server (make run-split sets it)}"
AUTHKEYS="${AUTHKEYS:?AUTHKEYS must point at the authkeys binary (make run-split sets it)}"
NATS_URL="nats://127.0.0.1:4222"
HTTP_ADDR="${AUTHKEYS_HTTP:-127.0.0.1:8080}"

mkdir -p "$DATA_DIR/nats" "$DATA_DIR/command" "$DATA_DIR/views"
TOKEN_FILE="$DATA_DIR/owner.token"
if [ ! -e "$DATA_DIR/command/log.redb" ]; then
  umask 077
  "$AUTHKEYS" admin bootstrap --data "$DATA_DIR/command" \
    --tailnet "${AUTHKEYS_TAILNET:-example.com}" --owner "${AUTHKEYS_OWNER:-admin@example.com}" \
    >"$TOKEN_FILE"
  umask 022
fi

NATS_STORE_DIR="$DATA_DIR/nats" setsid "$NATS_SERVER" -c "$ROOT/deploy/nats-server.conf" \
  >"$DATA_DIR/nats-server.log" 2>&1 &
nats_pid=$!
pids=()
stop() {
  # Front to back: api, project, command; then the broker.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  kill -TERM "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then break; fi
  kill -0 "$nats_pid" 2>/dev/null || { echo "nats-server failed; see $DATA_DIR/nats-server.log" >&2; exit 1; }
  sleep 0.1
done

"$AUTHKEYS" command --data "$DATA_DIR/command" --nats "$NATS_URL" & pids+=($!)
"$AUTHKEYS" project --data "$DATA_DIR/views" --nats "$NATS_URL" & pids+=($!)
"$AUTHKEYS" api --http "$HTTP_ADDR" --nats "$NATS_URL" --hashing-key "$DATA_DIR/command/hashing.key" & pids+=($!)
echo "up (split): command, project, api on http://$HTTP_ADDR; Owner token in $TOKEN_FILE; Ctrl-C stops"
wait -n "${pids[@]}"
