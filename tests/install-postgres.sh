#!/usr/bin/env bash
# Install the PostgreSQL server programs that the tests start a throwaway server with (tests/conftest.py, fixture
# `postgres`). Does nothing when initdb is already on PATH or under /usr/lib/postgresql/*/bin. Debian or Ubuntu, as
# root (or with sudo). CI runs it before `make test`.
set -euo pipefail

find_initdb() {
  command -v initdb 2>/dev/null && return 0
  local f
  for f in /usr/lib/postgresql/*/bin/initdb; do [ -x "$f" ] && { echo "$f"; return 0; }; done
  return 1
}

if found=$(find_initdb); then
  echo "install-postgres: PostgreSQL is installed ($found)"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else
  echo "install-postgres: PostgreSQL is not installed and this is not root (and there is no sudo): install the postgresql package" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "install-postgres: no apt-get: install PostgreSQL's server (initdb, pg_ctl) with this system's package manager" >&2; exit 1; }

echo "install-postgres: installing the postgresql package"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
found=$(find_initdb) || { echo "install-postgres: installed postgresql, but initdb is still not found" >&2; exit 1; }
echo "install-postgres: installed ($found)"
