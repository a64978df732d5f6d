# Sourced by services.sh: helpers to reach the test PostgreSQL, and a throwaway server for one test run
# when there is none (a fresh machine, or a URL pointed at a port where nothing listens).
#
# The throwaway server has one shape whatever its binaries: initdb into a mktemp folder (trust auth, the
# URL's user as superuser), pg_ctl start on 127.0.0.1 (and a Unix socket in that folder, so it never meets
# a system cluster's socket), createdb for the URL's database, and on exit (success, failure or Ctrl-C)
# pg_ctl stop and the folder deleted. The binaries come from:
#   debian    as root: Debian's packages (installed when missing). PostgreSQL refuses to run as root, so
#             the server runs as the `postgres` user.
#   pgserver  without root: the PyPI wheel `pgserver`, which ships the server binaries; installed into
#             .venv on first need (it is not a project dependency: only these scripts use it).
# JIANBAO_THROWAWAY_POSTGRES=debian|pgserver picks one whoever runs the script.
# Needs .venv's python on PATH (venv.sh is sourced first).

# The URL's host, port, user and database, one a line; what it leaves out is 127.0.0.1, 5432, postgres
# and (as libpq does) the user's name for the database.
postgres_url_parts() {
  python - "$1" <<'PY'
import sys
from urllib.parse import unquote, urlsplit

url = urlsplit(sys.argv[1])
user = unquote(url.username or "postgres")
print(url.hostname or "127.0.0.1", url.port or 5432, user, unquote(url.path.lstrip("/")) or user, sep="\n")
PY
}

# Whether a PostgreSQL server accepts connections at HOST PORT.
postgres_answers() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h "$1" -p "$2" -t 3
    return
  fi
  # No client tools yet (a fresh machine): open the way every PostgreSQL client does, with an SSLRequest;
  # a PostgreSQL server answers it with one byte, S or N, where anything else would not.
  python - "$1" "$2" <<'PY'
import socket, struct, sys

try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as connection:
        connection.sendall(struct.pack("!ii", 8, 80877103))
        sys.exit(0 if connection.recv(1) in (b"S", b"N") else 1)
except OSError:
    sys.exit(1)
PY
}

# Whether nothing listens on 127.0.0.1 PORT (bash's /dev/tcp connects, or fails at once on loopback).
loopback_port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

loopback_free_port() {
  python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Debian's server binaries, installed when missing.
debian_postgres_bin() {
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    # Without this the package creates and starts its own "main" cluster on 5432, with peer and password
    # auth and no database test: the next run would find 5432 answering, start nothing, and fail.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/jianbao-test.conf
    echo "installing PostgreSQL from Debian's packages..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1)"
}

# The server binaries inside the pgserver wheel, installed into .venv when missing. Only its binaries
# are used, never its Python API, so its Python dependencies are left out.
pgserver_postgres_bin() {
  local find_package='import importlib.util, sys; spec = importlib.util.find_spec("pgserver")'
  if ! python -c "$find_package; sys.exit(spec is None)"; then
    echo "installing the pgserver wheel (PostgreSQL server binaries) into .venv..." >&2
    python -m pip install --quiet --disable-pip-version-check --no-deps pgserver
  fi
  python -c "$find_package; print(spec.submodule_search_locations[0] + '/pginstall/bin')"
}

# Runs a server binary as the server's user: ourselves, or when root the `postgres` user (`nobody` on a
# machine without one), from the throwaway folder, since the user may not be able to read our cwd.
throwaway_postgres_as_owner() {
  (
    cd "$throwaway_postgres_dir"
    if [ "$(id -u)" = 0 ]; then
      runuser -u "$throwaway_postgres_owner" -- "$@"
    else
      "$@"
    fi
  )
}

# Starts a throwaway server for USER and DATABASE on 127.0.0.1 PORT (or a free port when something
# listens there), stopped and deleted when this shell exits, and points JIANBAO_TEST_POSTGRES_URL at it.
throwaway_postgres_start() {
  local user="$1" database="$2" port="$3" started="$EPOCHREALTIME" kind
  kind="${JIANBAO_THROWAWAY_POSTGRES:-$([ "$(id -u)" = 0 ] && echo debian || echo pgserver)}"
  case "$kind" in
    debian) throwaway_postgres_bin="$(debian_postgres_bin)" ;;
    pgserver) throwaway_postgres_bin="$(pgserver_postgres_bin)" ;;
    *) echo "JIANBAO_THROWAWAY_POSTGRES must be debian or pgserver, not '$kind'" >&2 && return 1 ;;
  esac
  loopback_port_is_free "$port" || port="$(loopback_free_port)"
  throwaway_postgres_owner="$(id -un)"
  if [ "$(id -u)" = 0 ]; then
    throwaway_postgres_owner="$(getent passwd postgres >/dev/null && echo postgres || echo nobody)"
  fi
  throwaway_postgres_dir="$(mktemp -d "${TMPDIR:-/tmp}/jianbao-postgres.XXXXXX")"
  # Armed before anything starts, so that a run interrupted while the server starts cleans up too.
  trap throwaway_postgres_stop EXIT
  chown "$throwaway_postgres_owner" "$throwaway_postgres_dir"
  local data="$throwaway_postgres_dir/data" log="$throwaway_postgres_dir/server.log"
  local locale=C
  locale -a 2>/dev/null | grep -ix 'c.utf-\?8' >/dev/null && locale=C.UTF-8 # what the Debian cluster uses
  echo "starting a throwaway PostgreSQL ($kind) for this run..." >&2
  # --no-sync and fsync=off: the data is deleted at the end, so it need not survive a power cut.
  if ! throwaway_postgres_as_owner "$throwaway_postgres_bin/initdb" --pgdata="$data" --username="$user" \
    --auth=trust --encoding=UTF8 --locale="$locale" --no-sync >"$throwaway_postgres_dir/initdb.log" 2>&1 ||
    ! throwaway_postgres_as_owner "$throwaway_postgres_bin/pg_ctl" start --pgdata="$data" --log="$log" \
      --wait --timeout=60 --silent \
      -o "-c listen_addresses=127.0.0.1 -p $port -k '$throwaway_postgres_dir' -c fsync=off"; then
    cat "$throwaway_postgres_dir"/*.log >&2
    return 1
  fi
  if [ "$database" != postgres ] && [ "$database" != template1 ]; then
    throwaway_postgres_as_owner "$throwaway_postgres_bin/createdb" -h 127.0.0.1 -p "$port" -U "$user" \
      "$database"
  fi
  JIANBAO_TEST_POSTGRES_URL="$(python - "$user" "$port" "$database" <<'PY'
import sys
from urllib.parse import quote

user, port, database = sys.argv[1:]
print(f"postgresql://{quote(user, safe='')}@127.0.0.1:{port}/{quote(database, safe='')}")
PY
)"
  export JIANBAO_TEST_POSTGRES_URL
  echo "throwaway PostgreSQL ($("$throwaway_postgres_bin/postgres" --version)) at $JIANBAO_TEST_POSTGRES_URL," \
    "up in $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $started }") s;" \
    "it is stopped and deleted when the run ends" >&2
}

throwaway_postgres_stop() {
  { set +x; } 2>/dev/null # test.sh traces its steps; this clean-up is not one of them
  if [ -f "$throwaway_postgres_dir/data/postmaster.pid" ]; then
    throwaway_postgres_as_owner "$throwaway_postgres_bin/pg_ctl" stop --pgdata="$throwaway_postgres_dir/data" \
      --mode=fast --wait --silent || true
  fi
  rm -rf "$throwaway_postgres_dir"
}
