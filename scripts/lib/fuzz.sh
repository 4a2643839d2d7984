# A fuzz pass over the admin API: schemathesis (from PyPI, in $TRIBUTARY_ROOT/.venv-schemathesis)
# sends generated requests for every operation of docs/openapi.json to a tributary-server over a
# fresh database, with an operator token, and fails on any 5xx answer.
# shellcheck shell=bash

TRIBUTARY_SCHEMATHESIS_SPEC="${TRIBUTARY_SCHEMATHESIS_SPEC:-schemathesis>=4.1,<5}"

ensure_schemathesis() {
  local root=${TRIBUTARY_ROOT:?} venv="$TRIBUTARY_ROOT/.venv-schemathesis"
  if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "version 4"; then
    local log="$root/.venv-schemathesis.log"
    { [ -x "$venv/bin/pip" ] || "${PYTHON:-python3}" -m venv "$venv"
      "$venv/bin/pip" install --quiet --disable-pip-version-check "$TRIBUTARY_SCHEMATHESIS_SPEC"
    } >"$log" 2>&1 || { printf 'error: %s\n' "installing schemathesis failed; see $log" >&2; return 1; }
    rm -f "$log"
  fi
  TRIBUTARY_SCHEMATHESIS="$venv/bin/schemathesis"
}

# Usage: fuzz_api [MAX_EXAMPLES]; needs DATABASE_URL (the server's database is created beside it).
fuzz_api() {
  local examples=${1:-${TRIBUTARY_FUZZ_EXAMPLES:-30}}
  ensure_schemathesis || return 1
  (cd "$TRIBUTARY_ROOT" && cargo build --quiet -p tributary-server) || return 1
  local bin="${CARGO_TARGET_DIR:-$TRIBUTARY_ROOT/target}/debug/tributary-server"
  local db="tributary_fuzz_$$"
  psql "$DATABASE_URL" -qc "create database $db" >/dev/null 2>&1 || return 1
  local url="${DATABASE_URL%/*}/$db" dir
  dir=$(mktemp -d)
  local token
  token=$(DATABASE_URL=$url "$bin" token create --name fuzz --role operator 2>"$dir/token-err") || {
    printf 'error: %s\n' "creating the fuzzer's token failed: $(head -n 8 "$dir/token-err")" >&2
    return 1
  }
  # a throwaway credentials key: the fuzzer connects integrations
  local key
  key=$("${PYTHON:-python3}" -c 'import secrets; print(secrets.token_hex(32))')
  DATABASE_URL=$url TRIBUTARY_SECRET_KEY=$key RUST_LOG=warn "$bin" --addr 127.0.0.1:0 \
    >"$dir/out" 2>"$dir/err" &
  local pid=$! base="" i
  for i in $(seq 1 100); do
    base=$(sed -n 's/^listening on //p' "$dir/out")
    [ -n "$base" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  local status=0
  if [ -z "$base" ]; then
    printf 'error: %s\n' "tributary-server did not start: $(cat "$dir/err")" >&2
    status=1
  else
    "$TRIBUTARY_SCHEMATHESIS" run "$TRIBUTARY_ROOT/docs/openapi.json" --url "$base" \
      -H "Authorization: Bearer $token" --checks not_a_server_error \
      --max-examples "$examples" --seed 1 --no-color >"$dir/report" 2>&1 || status=$?
    tail -n 25 "$dir/report" >&2
    if grep -q 'request failed' "$dir/err" 2>/dev/null; then status=1; fi
  fi
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if [ "$status" -ne 0 ]; then printf 'server log:\n%s\n' "$(tail -n 40 "$dir/err")" >&2; fi
  rm -rf "$dir"
  psql "$DATABASE_URL" -qc "drop database if exists $db" >/dev/null 2>&1
  return "$status"
}
