# shellcheck shell=bash
# Sourced by scripts/demo and scripts/test: creates .venv once and installs fulmen into it, editable,
# with constraints.txt pinning torch to the CPU build on this machine's disk (no CUDA download).
# PYTHON picks the interpreter (Python >= 3.10); the default is python3.
fulmen_venv() {
  local extras=${1:-}
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c constraints.txt -e ".${extras}"
}
