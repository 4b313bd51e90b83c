#!/bin/bash
# A vla-rl GRPO run on a SLURM allocation, with the env workers as Ray actors on the other nodes (docs/cluster.md).
#
#   sbatch launch/slurm_ray.sh                                   # configs/quickstart.yaml
#   CONFIG=configs/vla_grpo_long.yaml PREFIX= sbatch launch/slurm_ray.sh
#
# The first node is the Ray head and runs the driver (`vla-rl train`: policy inference and the update, on its GPU
# if it has one); it offers Ray no CPUs, so env actors go to the other nodes, each of which advertises `env_node`
# (one per CPU) and holds env actors (distributed.actor_resources={env_node: 1}). With one node, the head holds
# the env actors too. Ray is stopped on every node at the end, whatever the run's outcome.
#
# Settings (environment): CONFIG (the run's config), PREFIX (where its distributed keys live: "grpo." for a
# quickstart config, "" for a vla_grpo config), VENV (the virtual environment with the ray extra: make install-ray),
# RAY_PORT, ACTOR_MEMORY_MB (distributed.actor_memory_mb: each env actor's RSS bound, MB; unset: none),
# EXTRA (further overrides, space-separated), WAIT_S (how long to wait for the workers to join).
#
#SBATCH --job-name=vla-rl-ray
#SBATCH --nodes=3
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=32
#SBATCH --time=04:00:00
#SBATCH --output=%x-%j.out
# #SBATCH --gpus-per-node=1          # site-specific: a GPU for the driver on the first node

set -euo pipefail

CONFIG=${CONFIG:-configs/quickstart.yaml}
PREFIX=${PREFIX-grpo.}
VENV=${VENV:-.venv}
RAY_PORT=${RAY_PORT:-6379}
ACTOR_MEMORY_MB=${ACTOR_MEMORY_MB:-}
EXTRA=${EXTRA:-}
WAIT_S=${WAIT_S:-300}

cd "${SLURM_SUBMIT_DIR:-.}"
# shellcheck disable=SC1091  # the venv's activate script exists only on the cluster
source "$VENV/bin/activate"
export MUJOCO_GL=${MUJOCO_GL:-egl}  # env actors inherit the driver's renderer (RayVectorEnv passes it on)

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
HEAD=${NODES[0]}
HEAD_IP=$(srun --nodes=1 --ntasks=1 --overlap -w "$HEAD" hostname --ip-address | awk '{print $1}')
ADDRESS="$HEAD_IP:$RAY_PORT"
CPUS=${SLURM_CPUS_PER_TASK:-$(nproc)}

stop_ray() {  # on every node, also after a failure; the background sruns end with their ray processes
  srun --nodes="${#NODES[@]}" --ntasks="${#NODES[@]}" --overlap ray stop --force >/dev/null 2>&1 || true
  wait || true
}
trap stop_ray EXIT

if [ "${#NODES[@]}" -eq 1 ]; then  # one node: the head holds the env actors too
  HEAD_ARGS=(--num-cpus="$CPUS" --resources="{\"env_node\": $CPUS}")
else
  HEAD_ARGS=(--num-cpus=0)
fi
echo "Ray head on $HEAD ($ADDRESS); env workers on: ${NODES[*]:1}"

wait_for_nodes() {  # until $1 nodes are alive in Ray's node table, at most WAIT_S seconds
  python - "$ADDRESS" "$1" "$WAIT_S" <<'EOF'
import logging
import sys
import time

import ray

address, want, wait_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + wait_s
while True:
    try:
        ray.init(address=address, logging_level=logging.ERROR)
        alive = sum(n["Alive"] for n in ray.nodes())
        ray.shutdown()
    except Exception:  # the head is not listening yet
        alive = 0
    print(f"{alive}/{want} Ray nodes up", flush=True)
    if alive >= want:
        break
    if time.monotonic() > deadline:
        sys.exit(f"only {alive} of {want} Ray nodes joined within {wait_s:.0f} s: see the ray start output above")
    time.sleep(5)
EOF
}

srun --nodes=1 --ntasks=1 --overlap -w "$HEAD" \
  ray start --head --node-ip-address="$HEAD_IP" --port="$RAY_PORT" --include-dashboard=false "${HEAD_ARGS[@]}" --block &
wait_for_nodes 1  # the head listens before the workers dial it

for node in "${NODES[@]:1}"; do
  srun --nodes=1 --ntasks=1 --overlap -w "$node" \
    ray start --address="$ADDRESS" --num-cpus="$CPUS" --resources="{\"env_node\": $CPUS}" --block &
done
wait_for_nodes "${#NODES[@]}"

MEMORY=()
if [ -n "$ACTOR_MEMORY_MB" ]; then
  MEMORY=("${PREFIX}distributed.actor_memory_mb=$ACTOR_MEMORY_MB")
fi
# shellcheck disable=SC2086  # EXTRA is a list of overrides
vla-rl train "$CONFIG" "${PREFIX}distributed.backend=ray" "${PREFIX}distributed.address=$ADDRESS" "${PREFIX}distributed.actor_resources={env_node: 1}" ${MEMORY[@]+"${MEMORY[@]}"} $EXTRA
