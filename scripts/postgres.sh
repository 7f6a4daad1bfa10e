#!/usr/bin/env bash
# Start the local PostgreSQL 15 cluster for the tests and make the mailtix role.
#   postgres.sh start   start (if stopped) and create the role (if missing)
#   postgres.sh url     print the admin URL the tests use to create throwaway DBs
set -euo pipefail
url="postgresql+psycopg://mailtix:mailtix@127.0.0.1:5432/postgres"
case "${1:-start}" in
url) echo "$url" ;;
start)
    if ! pg_ctlcluster 15 main status >/dev/null 2>&1; then
        pg_ctlcluster --skip-systemctl-redirect 15 main start
    fi
    cd /
    runuser -u postgres -- psql -qtAc \
        "SELECT 1 FROM pg_roles WHERE rolname='mailtix'" | grep -q 1 ||
        runuser -u postgres -- psql -qc \
            "CREATE ROLE mailtix LOGIN CREATEDB PASSWORD 'mailtix'"
    ;;
*) echo "usage: $0 start|url" >&2; exit 2 ;;
esac
