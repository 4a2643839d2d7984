# libfaketime, for the fault-injection scenario whose workers run with their clocks minutes off
# (tests/tests/faults/clocks.rs): Debian's `faketime` (it brings `libfaketime`), installed with
# apt when missing (CI runs as root with the Debian registry reachable), as browser.sh does for
# chromium. Exports TRIBUTARY_FAKETIME_LIB, the library the test preloads into the workers.
# shellcheck shell=bash

faketime_lib() {
  local lib
  for lib in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    [ -f "$lib" ] && { printf '%s\n' "$lib"; return 0; }
  done
  return 1
}

ensure_faketime() {
  if ! faketime_lib >/dev/null; then
    command -v apt-get >/dev/null 2>&1 || { printf 'error: %s\n' "libfaketime is needed (apt-get install faketime)" >&2; return 1; }
    local log="${TRIBUTARY_ROOT:?}/.apt-faketime.log"
    {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime
    } >"$log" 2>&1 || { printf 'error: %s\n' "installing faketime failed; see $log" >&2; return 1; }
    rm -f "$log"
  fi
  export TRIBUTARY_FAKETIME_LIB
  TRIBUTARY_FAKETIME_LIB=$(faketime_lib)
}
