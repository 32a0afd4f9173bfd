# Sourced by run-demo.sh when STORE=postgresql: a throwaway PostgreSQL server
# for the demo's processors. initdb into a fresh temp dir, the server listening
# only on a Unix socket in that dir (no TCP port to collide with), trust
# authentication for user "kpay", database "klarna" in the C locale
# (docs/OPERATIONS.md, "Running on PostgreSQL"). PostgreSQL refuses to run as
# root: as root the dir belongs to `nobody` and the server programs run as
# nobody (runuser), as tests/support/postgres_server does. pg_stop_demo
# (called by run-demo.sh's stop_all) stops it and removes the dir: the demo's
# state, like its in-memory Kafka, lasts one run.
PG_BIN=${PG_BIN:-$(pg_config --bindir 2>/dev/null || true)}
[[ -x $PG_BIN/initdb ]] || PG_BIN=/usr/lib/postgresql/15/bin
if [[ ! -x $PG_BIN/initdb || ! -x $PG_BIN/pg_ctl ]]; then
  echo "make run: STORE=postgresql needs PostgreSQL's server programs (initdb, pg_ctl) in $PG_BIN:" >&2
  echo "          install postgresql-15 (scripts/install-deps.sh) or set PG_BIN" >&2
  exit 1
fi
PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kpay-demo-pg-XXXXXX")
pg_as_owner() { "$@"; }
if [[ $(id -u) == 0 ]]; then
  chown nobody: "$PG_DIR"
  pg_as_owner() { runuser -u nobody -- "$@"; }
fi
pg_stop_demo() {
  [[ -n ${PG_DIR:-} ]] || return 0
  if [[ -f $PG_DIR/data/postmaster.pid ]]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    echo "  PostgreSQL stopped"
  fi
  cp "$PG_DIR/postgres.log" "$RUN_DIR/postgres.log" 2>/dev/null || true
  rm -rf "$PG_DIR"
  PG_DIR=
}
if ! pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U kpay -E UTF8 --locale=C --auth=trust \
     >"$RUN_DIR/postgres-initdb.log" 2>&1; then
  echo "make run: initdb failed; last lines of $RUN_DIR/postgres-initdb.log:" >&2
  tail -n 20 "$RUN_DIR/postgres-initdb.log" >&2
  exit 1
fi
# The server's log goes into its own dir (writable by its user), copied to
# $RUN_DIR/postgres.log by stop_all.
if ! pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 \
     -o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR' -c max_connections=60" \
     start >/dev/null 2>&1; then
  echo "make run: PostgreSQL did not start; last lines of its log:" >&2
  tail -n 20 "$PG_DIR/postgres.log" >&2 || true
  exit 1
fi
pg_as_owner "$PG_BIN/createdb" -h "$PG_DIR" -U kpay klarna
PG_DSN="host=$PG_DIR dbname=klarna user=kpay"
DEMO_INFO+="  PostgreSQL         $PG_DSN  (throwaway: removed when the demo stops)
                     psql: $PG_BIN/psql \"$PG_DSN\"
"
