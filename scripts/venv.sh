# Sourced by scripts/run and scripts/test: create .venv on first use and install the pinned
# requirements, again whenever a requirements file changes. Needs only python3 (>= 3.11).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

ensure_venv() {
  local files=("$REPO/requirements.txt" "$@")
  local stamp="$VENV/.installed-$(cat "${files[@]}" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
    echo "[setup] creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi
  echo "[setup] installing pinned requirements" >&2
  local args=()
  for file in "${files[@]}"; do args+=(-r "$file"); done
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
  touch "$stamp"
}
