#!/usr/bin/env bash
# Start a local PostgreSQL server for the multi-machine study test and print its URL.
# Usage: .ci/postgres.sh [--install]   (--install: apt-get install postgresql when it is missing)
# Prints a URL like postgresql://harness:harness@127.0.0.1:5432/postgres on success; exits 1 otherwise.
set -u
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if [ "${1:-}" = "--install" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 \
      || { echo "postgres: apt-get install postgresql failed" >&2; exit 1; }
  else
    echo "postgres: pg_ctlcluster not found (Debian's postgresql package is not installed)" >&2; exit 1
  fi
fi
version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
if [ -z "$version" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_createcluster "$version" main >/dev/null 2>&1 || { echo "postgres: no cluster and pg_createcluster failed" >&2; exit 1; }
fi
pg_ctlcluster "$version" main status >/dev/null 2>&1 || pg_ctlcluster "$version" main start >/dev/null 2>&1 \
  || { echo "postgres: could not start cluster $version/main" >&2; exit 1; }
port=$(pg_conftool -s "$version" main show port 2>/dev/null || echo 5432)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -n -u postgres "$@"; fi; }
for _ in $(seq 1 20); do as_pg psql -p "$port" -qAtc "select 1" >/dev/null 2>&1 && break; sleep 0.5; done
as_pg psql -p "$port" -qAtc "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'harness') THEN CREATE ROLE harness LOGIN SUPERUSER PASSWORD 'harness'; END IF; END \$\$;" >/dev/null \
  || { echo "postgres: could not create the harness role" >&2; exit 1; }
echo "postgresql://harness:harness@127.0.0.1:${port}/postgres"
