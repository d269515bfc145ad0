# Sourced by scripts/test: Debian tools that some tests drive for real. Installed when missing
# and possible (root with apt-get); otherwise those tests skip, or fail under CI=true.
#   prometheus      - promtool, and a Prometheus server that scrapes the platform
#   docker-compose  - `docker-compose config -q` validates docker-compose.yml (no engine needed)
#   chromium, chromium-driver - the headless browser the console's tests drive (tests/browser)
ensure_system_tools() {
  local missing=()
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "[setup] missing ${missing[*]} (apt-get install ${missing[*]}); their tests will skip" >&2
    return 0
  fi
  echo "[setup] installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; } \
    || echo "[setup] could not install ${missing[*]}" >&2
}
