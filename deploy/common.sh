# Shared by run-local.sh, run-split.sh and run-secure.sh (sourced, not run): bootstrap on first start, a
# nats-server in its own session, a bounded wait for it, and stopping roles front to back.

# The settings every run script shares; DATA_DIR defaults to $DEFAULT_DATA_DIR, set by the script.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${DATA_DIR:-$ROOT/$DEFAULT_DATA_DIR}"
NATS_SERVER="${NATS_SERVER:?NATS_SERVER must point at nats-server (make sets it)}"
AUTHKEYS="${AUTHKEYS:?AUTHKEYS must point at the authkeys binary (make sets it)}"
NATS_URL="nats://127.0.0.1:4222"
HTTP_ADDR="${AUTHKEYS_HTTP:-127.0.0.1:8080}"
TOKEN_FILE="$DATA_DIR/owner.token"

# bootstrap_once LOG_DIR TOKEN_FILE: create a tailnet once and keep the Owner's API token in a
# 0600 file (bootstrap is offline: it runs before the command service holds the log).
bootstrap_once() {
  if [ ! -e "$1/log.redb" ]; then
    mkdir -p "$1"
    (umask 077 && "$AUTHKEYS" admin bootstrap --data "$1" \
      --tailnet "${AUTHKEYS_TAILNET:-example.com}" --owner "${AUTHKEYS_OWNER:-admin@example.com}" \
      >"$2")
  fi
}

# start_nats DATA_DIR: nats-server (with $NATS_CONF, default deploy/nats-server.conf) in its own session, so that Ctrl-C (SIGINT to the terminal's
# process group) reaches authkeys only: authkeys stops first, answering in-flight commands, and
# nats-server after it. Sets nats_pid; returns once it accepts connections (bounded).
start_nats() {
  mkdir -p "$1/nats"
  NATS_STORE_DIR="$1/nats" setsid "$NATS_SERVER" -c "${NATS_CONF:-$ROOT/deploy/nats-server.conf}" \
    >"$1/nats-server.log" 2>&1 &
  nats_pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then return 0; fi
    kill -0 "$nats_pid" 2>/dev/null || { echo "nats-server failed; see $1/nats-server.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "nats-server did not accept connections within 10 s; see $1/nats-server.log" >&2
  exit 1
}

# stop_all: SIGTERM the roles in $pids last-started first (the front), waiting for each, then
# nats-server.
pids=()
stop_all() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  if [ -n "${nats_pid:-}" ]; then
    kill -TERM "$nats_pid" 2>/dev/null || true
    wait "$nats_pid" 2>/dev/null || true
  fi
}
