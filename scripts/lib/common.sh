# Shared by the scripts in scripts/: finding the workspace, building binaries, PostgreSQL.
# shellcheck shell=bash

TRIBUTARY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export TRIBUTARY_ROOT
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

pg_answers() { # URL
  if command -v psql >/dev/null 2>&1; then
    psql "$1" -Atqc 'select 1' >/dev/null 2>&1
  else
    local hostport=${1#*@}; hostport=${hostport%%/*}
    (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null
  fi
}

# Starts a throwaway PostgreSQL from the system binaries on PORT (data under DIR) unless one
# already answers there. Prints its URL.
pg_start_throwaway() { # PORT [DIR]
  local port=$1 dir=${2:-/tmp/tributary-pg-$1}
  local url="postgres://postgres@127.0.0.1:$port/postgres"
  if pg_answers "$url"; then echo "$url"; return 0; fi
  [ -x "$PGBIN/initdb" ] || die "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin); install postgresql or set DATABASE_URL"
  local as=()
  if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    "${as[@]}" "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
      || die "initdb failed: see $dir/initdb.log"
  fi
  "${as[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" >/dev/null \
    || die "PostgreSQL did not start: see $dir/server.log"
  echo "$url"
}

# Sets DATABASE_URL: the one given if it answers; else the local server on 5432; else a
# throwaway server on 55432.
ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    pg_answers "$DATABASE_URL" || die "DATABASE_URL is set but nothing answers there"
    return 0
  fi
  local local_url="postgres://postgres@127.0.0.1:5432/postgres"
  if pg_answers "$local_url"; then
    DATABASE_URL=$local_url
  else
    say "no PostgreSQL answers on 127.0.0.1:5432: starting a throwaway one on 55432"
    DATABASE_URL=$(pg_start_throwaway 55432) || exit 1
  fi
  export DATABASE_URL
}

# DATABASE_URL with its database replaced by NAME, created if missing; its parameters kept
# (`?host=/var/run/postgresql` for the server's Unix socket, `?sslmode=disable`, …).
database_named() { # NAME
  local name=$1 url=${DATABASE_URL%%\?*} params=""
  [ "$url" = "$DATABASE_URL" ] || params="?${DATABASE_URL#*\?}"
  if command -v psql >/dev/null 2>&1; then
    psql "$DATABASE_URL" -Atqc "select 1 from pg_database where datname = '$name'" | grep -q 1 \
      || psql "$DATABASE_URL" -qc "create database \"$name\"" >/dev/null
  fi
  echo "${url%/*}/$name$params"
}

# Builds (quietly) and runs a binary of the workspace.
run_bin() { # PACKAGE BIN [ARGS...]
  local package=$1 bin=$2; shift 2
  (cd "$TRIBUTARY_ROOT" && cargo build --quiet -p "$package" --bin "$bin") || die "build of $bin failed"
  exec "${CARGO_TARGET_DIR:-$TRIBUTARY_ROOT/target}/debug/$bin" "$@"
}

# DATABASE_URL as given; or, when none is given, the database `tributary` on the local (or
# throwaway) server.
ensure_app_database() {
  local given=${DATABASE_URL:-}
  ensure_postgres
  if [ -z "$given" ]; then DATABASE_URL=$(database_named tributary); fi
  export DATABASE_URL
}
