#!/usr/bin/env bash
# Brings authkeys up on a 3-node NATS cluster on loopback for `make run-cluster` (SPEC §7):
# three nats-servers (client ports 4222-4224, routes 6222-6224, monitoring 8222-8224), each
# with JetStream and its own store, then `authkeys serve` on all three with the events stream
# at replicas 3 and commands acknowledged only once the cluster stores their events, and a
# standby command service that follows the stream into its own copy of the log and takes over
# when the primary stops. Kill any one nats-server (see the pids printed) and the system keeps
# answering. Ctrl-C stops everything. Data lives under $DATA_DIR (default .data-cluster/).
set -euo pipefail

DEFAULT_DATA_DIR=.data-cluster
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
NATS_URL="nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
bootstrap_once "$DATA_DIR/authkeys" "$TOKEN_FILE"

nats_pids=()
stop_cluster() {
  stop_all
  for pid in "${nats_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${nats_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

routes=(nats-route://127.0.0.1:6222 nats-route://127.0.0.1:6223 nats-route://127.0.0.1:6224)
for i in 0 1 2; do
  others=()
  for j in 0 1 2; do [ "$j" = "$i" ] || others+=("${routes[$j]}"); done
  mkdir -p "$DATA_DIR/n$((i + 1))"
  NATS_SERVER_NAME="n$((i + 1))" NATS_LISTEN="127.0.0.1:$((4222 + i))" \
    NATS_HTTP="127.0.0.1:$((8222 + i))" NATS_CLUSTER_LISTEN="127.0.0.1:$((6222 + i))" \
    NATS_ROUTE_1="${others[0]}" NATS_ROUTE_2="${others[1]}" \
    NATS_STORE_DIR="$DATA_DIR/n$((i + 1))" \
    setsid "$NATS_SERVER" -c "$ROOT/deploy/nats-cluster.conf" >"$DATA_DIR/n$((i + 1)).log" 2>&1 &
  nats_pids+=($!)
done

# Healthy means JetStream has a meta leader: the cluster formed (bounded wait).
for port in 8222 8223 8224; do
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || {
    echo "the NATS cluster did not form within 30 s; see $DATA_DIR/n*.log" >&2
    exit 1
  }
done

cat <<MSG
up: a 3-node NATS cluster (JetStream, Raft): n1 on 127.0.0.1:4222 (pid ${nats_pids[0]}),
    n2 on 127.0.0.1:4223 (pid ${nats_pids[1]}), n3 on 127.0.0.1:4224 (pid ${nats_pids[2]});
    monitoring http://127.0.0.1:8222-8224, logs $DATA_DIR/n*.log
up: authkeys serve (every role, events stream at replicas 3, --ack-after-replication),
    HTTP API v2 on http://$HTTP_ADDR, data in $DATA_DIR/authkeys
    the Owner's API token is in $TOKEN_FILE
up: a standby command service (data in $DATA_DIR/standby, log $DATA_DIR/standby.log): pause
    the primary (kill -STOP <serve's pid>) and it takes the lease within 2 s and answers
    registrations; resume it (kill -CONT) and the old primary finds itself fenced and follows

Try losing a machine: kill -9 one of the pids above, then register a node:
  $AUTHKEYS register --nats $NATS_URL --authkey tskey-auth-… --hostname web-1

Ctrl-C stops everything.
MSG

"$AUTHKEYS" serve --data "$DATA_DIR/authkeys" --http "$HTTP_ADDR" --nats "$NATS_URL" \
  --stream-replicas 3 --ack-after-replication &
pids+=($!)
echo "serve's pid: ${pids[0]}"
# The standby holds copies of the primary's key files, nothing else.
mkdir -p "$DATA_DIR/standby"
for key in signing.key hashing.key derivation.key; do
  install -m 0600 "$DATA_DIR/authkeys/$key" "$DATA_DIR/standby/$key"
done
"$AUTHKEYS" command --standby --data "$DATA_DIR/standby" --nats "$NATS_URL" \
  --stream-replicas 3 --ack-after-replication >"$DATA_DIR/standby.log" 2>&1 &
pids+=($!)
wait "${pids[0]}"
