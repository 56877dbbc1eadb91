#!/usr/bin/env bash
# The split topology on loopback: nats-server, then `authkeys command`, `authkeys project`,
# `authkeys timers`, `authkeys webhooks` and `authkeys api` as five processes that talk only over NATS (what
# `authkeys serve` runs in one). `make run-split`. Ctrl-C stops the front first (api), then the
# others, then nats-server. AUTHKEYS_EPHEMERAL_INACTIVITY_TIMEOUT (default 30m) is read by timers.
set -euo pipefail

DEFAULT_DATA_DIR=.data-split
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bootstrap_once "$DATA_DIR/command" "$TOKEN_FILE"
mkdir -p "$DATA_DIR/views" "$DATA_DIR/timers" "$DATA_DIR/webhooks"
trap stop_all EXIT
trap 'exit 130' INT TERM
start_nats "$DATA_DIR"

"$AUTHKEYS" command --data "$DATA_DIR/command" --nats "$NATS_URL" & pids+=($!)
"$AUTHKEYS" project --data "$DATA_DIR/views" --nats "$NATS_URL" & pids+=($!)
"$AUTHKEYS" timers --data "$DATA_DIR/timers" --nats "$NATS_URL" & pids+=($!)
"$AUTHKEYS" webhooks --data "$DATA_DIR/webhooks" --nats "$NATS_URL" & pids+=($!)
"$AUTHKEYS" api --http "$HTTP_ADDR" --nats "$NATS_URL" --hashing-key "$DATA_DIR/command/hashing.key" & pids+=($!)
echo "up (split): command, project, timers, webhooks, api on http://$HTTP_ADDR; Owner token in $TOKEN_FILE; Ctrl-C stops"
wait -n "${pids[@]}"
