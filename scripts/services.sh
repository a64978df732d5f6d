# Sourced by test.sh: the tests need the local PostgreSQL (127.0.0.1:5432, trust auth, database test).
# This machine kind starts it before a session; if it has stopped, start it the way the machine does.
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if command -v pg_isready >/dev/null && ! pg_ready; then
  if command -v pg_ctlcluster >/dev/null; then
    echo "starting PostgreSQL..." >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  fi
fi
