# Sourced by run.sh and test.sh: make ./.venv with jianbao and its dev tools installed, once, and again
# whenever pyproject.toml changes. Uses the machine's Python 3.11; needs only PyPI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${JIANBAO_PYTHON:-$(command -v python3.11 || command -v python3)}"
stamp="$venv/.jianbao-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up $venv (first run, or pyproject.toml changed)..." >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
