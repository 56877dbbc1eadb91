#!/usr/bin/env bash
# `make run-secure`: the same system as `make run`, with NATS authentication on (SPEC §6). On
# first start it writes the nats-server authorization block and one nkey seed per role with
# `authkeys admin nats-config` (into $DATA_DIR/nats-auth, mode 0700), then runs nats-server with
# that block and every authkeys role connected as itself (`authkeys serve --nats-auth`).
# Anonymous connections are refused. Data lives under $DATA_DIR (default .data-secure/).
set -euo pipefail

DEFAULT_DATA_DIR=.data-secure
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
AUTH_DIR="$DATA_DIR/nats-auth"
REGISTRAR="${AUTHKEYS_REGISTRAR:-local}"
bootstrap_once "$DATA_DIR/authkeys" "$TOKEN_FILE"
if [ ! -e "$AUTH_DIR/nats-server.conf" ]; then
  "$AUTHKEYS" admin nats-config --out "$AUTH_DIR" --registrar "$REGISTRAR"
fi
# The loopback config of `make run` plus the authorization block (nats-server resolves an
# include relative to the including file).
rel() { realpath --relative-to="$DATA_DIR" "$1"; }
cat >"$DATA_DIR/nats-server-secure.conf" <<CONF
include "$(rel "$ROOT/deploy/nats-server.conf")"
include "$(rel "$AUTH_DIR/nats-server.conf")"
CONF
NATS_CONF="$DATA_DIR/nats-server-secure.conf"
trap stop_all EXIT
trap 'exit 130' INT TERM
start_nats "$DATA_DIR"

cat <<MSG
up: nats-server (JetStream, nkey authentication, one user per role) on $NATS_URL
up: authkeys serve (every role as its own NATS user; HTTP API v2 on http://$HTTP_ADDR)
    the Owner's API token is in $TOKEN_FILE; the roles' seeds are in $AUTH_DIR

In another shell:
  TOKEN=\$(cat $TOKEN_FILE)
  curl -s -u "\$TOKEN:" -H 'content-type: application/json' \\
    -d '{"capabilities":{"devices":{"create":{"reusable":true}}}}' http://$HTTP_ADDR/api/v2/tailnet/-/keys
  # registrar "$REGISTRAR" registers with its own seed (anyone else is refused by NATS)
  $AUTHKEYS register --nats $NATS_URL --nats-nkey $AUTH_DIR/registrar-$REGISTRAR.nk \\
    --registrar $REGISTRAR --authkey-file key.txt --hostname web-1

Ctrl-C stops everything.
MSG

"$AUTHKEYS" serve --data "$DATA_DIR/authkeys" --http "$HTTP_ADDR" --nats "$NATS_URL" \
  --nats-auth "$AUTH_DIR" &
pids+=($!)
wait "${pids[0]}"
