# Sourced by scripts/smoke and scripts/load: the platform a client command talks to by default,
# the one scripts/run started on this machine, as its development admin. BAILIAN_BASE_URL,
# BAILIAN_USERNAME and BAILIAN_PASSWORD (or the commands' own options) override them.
use_local_platform() {
  local password_file="${DATA_DIR:-$REPO/var}/dev-admin-password"
  if [ -z "${BAILIAN_PASSWORD:-}" ] && [ -f "$password_file" ]; then
    export BAILIAN_USERNAME="${BAILIAN_USERNAME:-admin}"
    BAILIAN_PASSWORD="$(cat "$password_file")"
    export BAILIAN_PASSWORD
  fi
  export BAILIAN_BASE_URL="${BAILIAN_BASE_URL:-http://127.0.0.1:${PORT:-8000}}"
  DEV_ADMIN_PASSWORD_FILE="$password_file"
}
