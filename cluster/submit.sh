#!/usr/bin/env bash
# Submit the digits example to a running Ray cluster (dashboard address in RAY_API_SERVER_ADDRESS,
# default http://127.0.0.1:8265) and wait for it to finish.
#   cluster/submit.sh [WORK_DIR] [extra raytrainer train flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
# Clusters started by `ray start` (Ray 2.60) require token authentication; the token is in
# ~/.ray/auth_token on the head node (or RAY_AUTH_TOKEN), and clients must opt in.
if [ -z "${RAY_AUTH_MODE:-}" ] && { [ -n "${RAY_AUTH_TOKEN:-}" ] || [ -f "$HOME/.ray/auth_token" ]; }; then
    export RAY_AUTH_MODE=token
fi
# The job runs in a copy of this directory that Ray unpacks elsewhere, so a relative work_dir
# would land (and be lost) there: make it absolute. On a multi-node cluster, give a location
# every node can reach (s3://bucket/runs/x).
work_dir=${1:-work_dirs/digits_ray_job}
case "$work_dir" in
    *://*|/*) ;;
    *) work_dir="$PWD/$work_dir" ;;
esac
shift || true
ray job submit --address "${RAY_API_SERVER_ADDRESS:-http://127.0.0.1:8265}" \
    --working-dir . \
    --runtime-env-json '{"excludes": [".venv", ".git", "work_dirs", "**/__pycache__"]}' \
    -- raytrainer train configs/digits/mlp.py --work-dir "$work_dir" --num-workers 2 "$@"
