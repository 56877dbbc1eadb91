#!/usr/bin/env bash
# Brings authkeys up on loopback for `make run`: a pinned nats-server with JetStream, then every
# authkeys role in one process (`authkeys serve`), in the foreground. Ctrl-C (or SIGTERM) stops
# authkeys gracefully, then nats-server. Data lives under $DATA_DIR (default .data/ in the repository).
set -euo pipefail

DEFAULT_DATA_DIR=.data
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bootstrap_once "$DATA_DIR/authkeys" "$TOKEN_FILE"
trap stop_all EXIT
trap 'exit 130' INT TERM
start_nats "$DATA_DIR"

cat <<MSG
up: nats-server (JetStream) on $NATS_URL, monitoring http://127.0.0.1:8222, log $DATA_DIR/nats-server.log
up: authkeys serve (command service, relay, views, HTTP API v2 on http://$HTTP_ADDR), data in $DATA_DIR/authkeys
    the Owner's API token is in $TOKEN_FILE
up: the admin console at http://$HTTP_ADDR/admin/ (sign in with that token)

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
pids+=($!)
wait "${pids[0]}"
