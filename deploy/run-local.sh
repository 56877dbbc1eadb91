#!/usr/bin/env bash
# Brings authkeys up on loopback for `make run`: a pinned nats-server with JetStream, then every
# authkeys role in one process (`authkeys serve`), in the foreground. Ctrl-C (or SIGTERM) stops authkeys gracefully,
# then nats-server. Data lives under $DATA_DIR (default .data/ in the repository).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${DATA_DIR:-$ROOT/.data}"
NATS_SERVER="${NATS_SERVER:?NATS_SERVER must point at nats-server (make run sets it)}"
AUTHKEYS="${AUTHKEYS:?AUTHKEYS must point at the authkeys binary (make run sets it)}"
NATS_URL="nats://127.0.0.1:4222"
HTTP_ADDR="${AUTHKEYS_HTTP:-127.0.0.1:8080}"

mkdir -p "$DATA_DIR/nats" "$DATA_DIR/authkeys"

# First start: create a tailnet and keep its Owner's API token in a 0600 file (bootstrap is
# offline: it must run before the command service holds the log).
TOKEN_FILE="$DATA_DIR/owner.token"
if [ ! -e "$DATA_DIR/authkeys/log.redb" ]; then
  umask 077
  "$AUTHKEYS" admin bootstrap --data "$DATA_DIR/authkeys" \
    --tailnet "${AUTHKEYS_TAILNET:-example.com}" --owner "${AUTHKEYS_OWNER:-admin@example.com}" \
    >"$TOKEN_FILE"
  umask 022
fi
# In its own session, so that Ctrl-C (SIGINT to the terminal's process group) reaches authkeys
# only: authkeys stops first, answering in-flight commands, and nats-server after it.
NATS_STORE_DIR="$DATA_DIR/nats" setsid "$NATS_SERVER" -c "$ROOT/deploy/nats-server.conf" \
  >"$DATA_DIR/nats-server.log" 2>&1 &
nats_pid=$!
authkeys_pid=""

stop() {
  if [ -n "$authkeys_pid" ] && kill -0 "$authkeys_pid" 2>/dev/null; then
    kill -TERM "$authkeys_pid" 2>/dev/null || true
    wait "$authkeys_pid" 2>/dev/null || true
  fi
  kill -TERM "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

# Wait (bounded) until nats-server answers its health check.
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then break; fi
  kill -0 "$nats_pid" 2>/dev/null || { echo "nats-server failed; see $DATA_DIR/nats-server.log" >&2; exit 1; }
  sleep 0.1
done

cat <<MSG
up: nats-server (JetStream) on $NATS_URL, monitoring http://127.0.0.1:8222, log $DATA_DIR/nats-server.log
up: authkeys serve (command service, relay, views, HTTP API v2 on http://$HTTP_ADDR), data in $DATA_DIR/authkeys
    the Owner's API token is in $TOKEN_FILE

In another shell:
  TOKEN=\$(cat $TOKEN_FILE)
  # create an auth key over the Tailscale-compatible API (the secret is in "key", shown once)
  curl -s -u "\$TOKEN:" -H 'content-type: application/json' \\
    -d '{"capabilities":{"devices":{"create":{"reusable":true,"tags":["tag:ci"]}}}}' \\
    http://$HTTP_ADDR/api/v2/tailnet/-/keys
  # register a node with it, as a registrar does
  $AUTHKEYS register --nats $NATS_URL --authkey tskey-auth-… --hostname web-1
  # see it
  curl -s -u "\$TOKEN:" http://$HTTP_ADDR/api/v2/tailnet/-/devices

Ctrl-C stops everything.
MSG

"$AUTHKEYS" serve --data "$DATA_DIR/authkeys" --http "$HTTP_ADDR" --nats "$NATS_URL" &
authkeys_pid=$!
wait "$authkeys_pid"
