#!/usr/bin/env bash
# Installs (once) the database servers and clients the database sinks' tests
# run against: MariaDB (`mariadbd`, `mariadb-install-db`, `mariadb`) and
# PostgreSQL (`initdb`, `pg_ctl`, `psql` under /usr/lib/postgresql/N/bin).
# Idempotent; prints what it found. The tests start their own servers on free
# ports on 127.0.0.1 (tests/src/databases.rs); the system services the Debian
# packages enable are never used.
set -euo pipefail

need_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: '$*' needs root (no sudo found)" >&2; exit 1; fi
}

# The newest PostgreSQL's bin directory, empty when none is installed.
pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; fi
}

# mariadbd lives in /usr/sbin, which a non-root PATH may lack.
mariadbd_path() {
    command -v mariadbd 2>/dev/null || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; } || true
}

missing=()
if [ -z "$(mariadbd_path)" ] || ! command -v mariadb-install-db >/dev/null 2>&1; then
    missing+=(mariadb-server)
fi
command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
if [ -z "$(pg_bin)" ]; then missing+=(postgresql); fi
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "databases: installing ${missing[*]} (apt)"
    # The packages' scripts start system services; with no init system (a
    # container) that fails harmlessly, and the tests never use them.
    if ! need_root apt-get update -qq; then
        echo "error: 'apt-get update' failed: cannot install ${missing[*]}" >&2
        exit 1
    fi
    if ! need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/tmp/sinkhost-databases-apt.log 2>&1; then
        tail -20 /tmp/sinkhost-databases-apt.log >&2 || true
        echo "error: 'apt-get install ${missing[*]}' failed (log: /tmp/sinkhost-databases-apt.log):" \
            "the database tests need MariaDB and PostgreSQL" >&2
        exit 1
    fi
fi

# Check what the tests will run, whether it was there or just installed.
mariadbd="$(mariadbd_path)"
pgbin="$(pg_bin)"
problems=()
[ -n "$mariadbd" ] || problems+=("mariadbd not found (package mariadb-server)")
command -v mariadb-install-db >/dev/null 2>&1 || problems+=("mariadb-install-db not found (package mariadb-server)")
command -v mariadb >/dev/null 2>&1 || problems+=("mariadb client not found (package mariadb-client)")
[ -n "$pgbin" ] || problems+=("/usr/lib/postgresql/*/bin/initdb not found (package postgresql)")
command -v psql >/dev/null 2>&1 || problems+=("psql not found (package postgresql-client)")
command -v runuser >/dev/null 2>&1 || problems+=("runuser not found (package util-linux)")
id -u postgres >/dev/null 2>&1 || problems+=("no 'postgres' user (created by package postgresql-common)")
if [ "${#problems[@]}" -gt 0 ]; then
    for problem in "${problems[@]}"; do echo "error: databases: $problem" >&2; done
    exit 1
fi

echo "databases: MariaDB $("$mariadbd" --version 2>/dev/null | sed -e 's/^.*Ver //' -e 's/ .*$//') at $mariadbd," \
    "PostgreSQL $("$pgbin/postgres" --version 2>/dev/null | awk '{print $3}') at $pgbin"
