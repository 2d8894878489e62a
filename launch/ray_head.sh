#!/usr/bin/env bash
# Start the Ray head of a multi-node rlkit cluster on this machine.
#
#   launch/ray_head.sh --ip 10.0.0.1 [--num-gpus 8] [--resources '{"learner_node": 1}']
#                      [--dashboard-host 127.0.0.1] [--port 6379]
#
# Binds Ray to the address given with --ip (default 127.0.0.1: a one-machine cluster).
# Every port is fixed, so a firewall can open exactly these between the nodes (see
# docs/multinode.md):
#   6379 GCS, 8076 object manager, 8077 node manager, 8078 dashboard agent gRPC,
#   52365 dashboard agent HTTP, 8079 runtime-env agent, 8080 metrics, 10001 Ray client,
#   20000-20999 worker processes. The dashboard and job API (8265) bind to 127.0.0.1 unless
#   --dashboard-host says otherwise: reach them through `ssh -L 8265:127.0.0.1:8265 HEAD`.
#
# Token authentication is on (RAY_AUTH_MODE=token): the token is RAY_AUTH_TOKEN if set, else
# ~/.ray/auth_token (created here if missing). Every worker node and every `ray job submit`
# needs the same token: copy the file, or export RAY_AUTH_TOKEN, on each machine. It is never
# printed. --no-auth turns it off, and only on a one-machine cluster (--ip and dashboard on 127.0.0.1).
set -euo pipefail

IP=127.0.0.1 PORT=6379 DASHBOARD_HOST=127.0.0.1 DASHBOARD_PORT=8265 RESOURCES='{}' AUTH=token
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ip) IP="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --dashboard-host) DASHBOARD_HOST="$2"; shift 2 ;;
    --dashboard-port) DASHBOARD_PORT="$2"; shift 2 ;;
    --resources) RESOURCES="$2"; shift 2 ;;
    --num-cpus) EXTRA+=(--num-cpus "$2"); shift 2 ;;
    --num-gpus) EXTRA+=(--num-gpus "$2"); shift 2 ;;
    --no-auth) AUTH=disabled; shift ;;
    --block) EXTRA+=(--block); shift ;;  # stay in the foreground (SLURM steps, containers)
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "ray_head.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ "$AUTH" == disabled && ( "$IP" != 127.0.0.1 || "$DASHBOARD_HOST" != 127.0.0.1 ) ]]; then
  echo "ray_head.sh: refusing --no-auth with --ip $IP / --dashboard-host $DASHBOARD_HOST: the GCS, Ray client" \
       "and job ports would let anyone who reaches them run code on the cluster. Keep the token;" \
       "--no-auth is for a one-machine cluster on 127.0.0.1 only." >&2
  exit 2
fi
export RAY_AUTH_MODE="$AUTH"
if [[ "$IP" == 127.0.0.1 ]]; then
  # Ray binds its servers to every interface unless told the cluster is one machine.
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
fi
if [[ "$AUTH" == token && -z "${RAY_AUTH_TOKEN:-}" ]]; then
  ray get-auth-token --generate > /dev/null  # writes ~/.ray/auth_token once; the token is not shown
fi

ray start --head --node-ip-address "$IP" --port "$PORT" \
  --dashboard-host "$DASHBOARD_HOST" --dashboard-port "$DASHBOARD_PORT" \
  --object-manager-port 8076 --node-manager-port 8077 --dashboard-agent-grpc-port 8078 \
  --dashboard-agent-listen-port 52365 --runtime-env-agent-port 8079 --metrics-export-port 8080 \
  --ray-client-server-port 10001 --min-worker-port 20000 --max-worker-port 20999 \
  --resources "$RESOURCES" --disable-usage-stats ${EXTRA[@]+"${EXTRA[@]}"}

cat <<INFO

Ray head is up at $IP:$PORT (token auth: $AUTH).
Join a worker:    launch/ray_worker.sh --head $IP:$PORT --ip <that worker's address>
Submit a recipe:  RAY_AUTH_MODE=$AUTH ray job submit --address http://$DASHBOARD_HOST:$DASHBOARD_PORT \\
                    --working-dir . -- python -m rlkit.train recipes/smollm2_math_grpo.yaml ray.address=auto
INFO
