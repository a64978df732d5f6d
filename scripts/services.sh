# Sourced by test.sh: the tests need a PostgreSQL server at JIANBAO_TEST_POSTGRES_URL (default
# postgresql://postgres@127.0.0.1:5432/test, trust auth; see tests/conftest.py). When it does not answer,
# start this machine's own cluster for that port if it has one, as the machine does; failing that (a fresh
# machine, or a URL on a port where nothing listens) start a throwaway server for this run only.
source "$(dirname "${BASH_SOURCE[0]}")/throwaway_postgres.sh"
export JIANBAO_TEST_POSTGRES_URL="${JIANBAO_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
mapfile -t postgres_url < <(postgres_url_parts "$JIANBAO_TEST_POSTGRES_URL")
postgres_host="${postgres_url[0]}" postgres_port="${postgres_url[1]}"
postgres_user="${postgres_url[2]}" postgres_database="${postgres_url[3]}"

# This machine kind runs a Debian cluster on 5432 (with the database test) and starts it before a session;
# if it has stopped, start it the way the machine does.
if ! postgres_answers "$postgres_host" "$postgres_port" &&
  [[ "$postgres_host" =~ ^(127\.0\.0\.1|localhost|::1)$ ]] && command -v pg_lsclusters >/dev/null; then
  cluster="$(pg_lsclusters -h | awk -v port="$postgres_port" '$3 == port && $4 == "down" { print $1, $2; exit }')"
  if [ -n "$cluster" ]; then
    echo "starting PostgreSQL $cluster..." >&2
    # shellcheck disable=SC2086 # "$cluster" is the version and the cluster's name
    pg_ctlcluster --skip-systemctl-redirect $cluster start || true
    for _ in $(seq 1 30); do postgres_answers "$postgres_host" "$postgres_port" && break; sleep 1; done
  fi
fi

if ! postgres_answers "$postgres_host" "$postgres_port"; then
  echo "no PostgreSQL answers at $postgres_host:$postgres_port (JIANBAO_TEST_POSTGRES_URL)" >&2
  throwaway_postgres_start "$postgres_user" "$postgres_database" "$postgres_port"
fi
