# moto: the SQS-compatible server the tests of the `sqs` queue backend run against, and the `aws`
# CLI the end-to-end tests send messages with. Both live in $TRIBUTARY_ROOT/.venv-moto.
# shellcheck shell=bash
#
# Usage (after sourcing common.sh, which sets TRIBUTARY_ROOT):
#   source scripts/lib/moto.sh && ensure_moto
# exports TRIBUTARY_MOTO_SERVER (the `moto_server` executable) and TRIBUTARY_AWS_CLI (`aws`).
# The Rust tests read these two variables; without them they look in .venv-moto, then on PATH,
# and fail with a message naming this function when neither has them.

TRIBUTARY_MOTO_SPEC="${TRIBUTARY_MOTO_SPEC:-moto[server]>=5.1,<6}"
TRIBUTARY_AWSCLI_SPEC="${TRIBUTARY_AWSCLI_SPEC:-awscli>=1.40,<2}"

# Installs moto[server] and awscli into $TRIBUTARY_ROOT/.venv-moto unless they are there already,
# then exports TRIBUTARY_MOTO_SERVER and TRIBUTARY_AWS_CLI. Quiet unless something fails.
ensure_moto() {
  local root=${TRIBUTARY_ROOT:?source scripts/lib/common.sh first}
  local venv="$root/.venv-moto"
  local python=${PYTHON:-python3}
  if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/aws" ]; then
    command -v "$python" >/dev/null 2>&1 || { printf 'error: %s\n' "python3 is needed to install moto (the SQS test server)" >&2; return 1; }
    local log="$root/.venv-moto.log"
    {
      [ -x "$venv/bin/pip" ] || "$python" -m venv "$venv"
      "$venv/bin/pip" install --quiet --disable-pip-version-check "$TRIBUTARY_MOTO_SPEC" "$TRIBUTARY_AWSCLI_SPEC"
    } >"$log" 2>&1 || {
      printf 'error: %s\n' "installing moto and awscli into $venv failed; see $log" >&2
      return 1
    }
    rm -f "$log"
  fi
  export TRIBUTARY_MOTO_SERVER="$venv/bin/moto_server"
  export TRIBUTARY_AWS_CLI="$venv/bin/aws"
}
