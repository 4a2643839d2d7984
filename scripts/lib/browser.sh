# Debian's chromium and chromium-driver for the dashboard's browser test, installed with apt when
# missing (CI runs as root with the Debian registry reachable). Exports TRIBUTARY_CHROMIUM and
# TRIBUTARY_CHROMEDRIVER for the test.
# shellcheck shell=bash

ensure_chromium() {
  if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { printf 'error: %s\n' "chromium and chromium-driver are needed (apt-get install chromium chromium-driver)" >&2; return 1; }
    local log="${TRIBUTARY_ROOT:?}/.apt-chromium.log"
    {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
    } >"$log" 2>&1 || { printf 'error: %s\n' "installing chromium failed; see $log" >&2; return 1; }
    rm -f "$log"
  fi
  export TRIBUTARY_CHROMIUM TRIBUTARY_CHROMEDRIVER
  TRIBUTARY_CHROMIUM=$(command -v chromium)
  TRIBUTARY_CHROMEDRIVER=$(command -v chromedriver)
}
