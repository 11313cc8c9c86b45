# Source this (or let the Makefile do it) to build and run against the venv's libtorch.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LIBTORCH_USE_PYTORCH=1
export PATH="$_root/.venv/bin:$PATH"
_torch_lib="$(ls -d "$_root"/.venv/lib/python3*/site-packages/torch/lib 2>/dev/null | head -n1)"
export LD_LIBRARY_PATH="${_torch_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _root _torch_lib
