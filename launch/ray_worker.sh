#!/usr/bin/env bash
# Join this machine to an rlkit Ray cluster started by launch/ray_head.sh.
#
#   launch/ray_worker.sh --head 10.0.0.1:6379 --ip 10.0.0.2 [--num-gpus 8] [--resources '{"rollout_node": 1}']
#
# Binds to --ip (the interface the head can reach), with the same fixed ports as the head, so one
# firewall rule set fits every node (docs/multinode.md). Token authentication must match the
# head: RAY_AUTH_TOKEN, or the head's ~/.ray/auth_token copied to this machine; --no-auth only if
# the head was started with it. Python, Ray and rlkit versions must equal the head's: `ray start`
# refuses a different Ray or Python version with "Version mismatch" (docs/multinode.md).
set -euo pipefail

HEAD="" IP=127.0.0.1 RESOURCES='{}' AUTH=token
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --head) HEAD="$2"; shift 2 ;;
    --ip) IP="$2"; shift 2 ;;
    --resources) RESOURCES="$2"; shift 2 ;;
    --num-cpus) EXTRA+=(--num-cpus "$2"); shift 2 ;;
    --num-gpus) EXTRA+=(--num-gpus "$2"); shift 2 ;;
    --no-auth) AUTH=disabled; shift ;;
    --block) EXTRA+=(--block); shift ;;  # stay in the foreground (SLURM steps, containers)
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "ray_worker.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$HEAD" ]] || { echo "ray_worker.sh: --head HOST:PORT is required (what ray_head.sh printed)" >&2; exit 2; }
export RAY_AUTH_MODE="$AUTH"
if [[ "$IP" == 127.0.0.1 ]]; then
  # Ray binds its servers to every interface unless told the cluster is one machine.
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
fi
if [[ "$AUTH" == token && -z "${RAY_AUTH_TOKEN:-}" && ! -s "$HOME/.ray/auth_token" ]]; then
  echo "ray_worker.sh: no token: export RAY_AUTH_TOKEN or copy the head's ~/.ray/auth_token here" >&2
  exit 2
fi

ray start --address "$HEAD" --node-ip-address "$IP" \
  --object-manager-port 8076 --node-manager-port 8077 --dashboard-agent-grpc-port 8078 \
  --dashboard-agent-listen-port 52365 --runtime-env-agent-port 8079 --metrics-export-port 8080 \
  --min-worker-port 20000 --max-worker-port 20999 \
  --resources "$RESOURCES" --disable-usage-stats ${EXTRA[@]+"${EXTRA[@]}"}
echo "joined $HEAD as $IP; check with: ray status --address $HEAD"
