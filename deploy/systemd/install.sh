#!/usr/bin/env bash
# Install facmon as a systemd service on a plain Linux host (Debian/Ubuntu tested by reading,
# any systemd distribution should do). Run as root from a checkout of the repository:
#
#   sudo deploy/systemd/install.sh            # install or upgrade from this checkout
#   sudo deploy/systemd/install.sh --no-apt   # skip the Debian packages for the PDF report
#
# Idempotent: an upgrade is the same command from a newer checkout. It never overwrites
# /etc/facmon/site.yaml or /etc/facmon/facmon.env and never starts or restarts the service;
# it prints what to do next. Layout (the units expect it):
#   /opt/facmon/venv          the virtualenv with the facmon command
#   /etc/facmon/site.yaml     the site config (root:facmon 0640)
#   /etc/facmon/facmon.env    secrets for ${ENV} references (root:facmon 0640)
#   /var/lib/facmon           data_dir: outbox, embedded store, SQLite tickets (facmon 0750)
set -euo pipefail

PREFIX=/opt/facmon
ETC=/etc/facmon
STATE=/var/lib/facmon
UNITS=/etc/systemd/system
DOCS=/usr/share/doc/facmon
PYTHON=${PYTHON:-python3}
APT=1

for arg in "$@"; do
    case "$arg" in
        --no-apt) APT=0 ;;
        -h | --help)
            sed -n '2,16p' "$0"
            exit 0
            ;;
        *)
            echo "unknown option: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (it creates a system user and writes to $PREFIX, $ETC and $UNITS)" >&2
    exit 1
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [ ! -f "$repo/pyproject.toml" ]; then
    echo "$repo does not look like a facmon checkout (no pyproject.toml)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "facmon needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

# pango and a CJK font for the monthly report PDF (WeasyPrint); the rest of facmon needs none.
if [ "$APT" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        python3-venv libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-wqy-microhei
fi

if ! id facmon >/dev/null 2>&1; then
    useradd --system --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
        --user-group facmon
fi
# Modbus RTU on local RS-485 adapters.
getent group dialout >/dev/null && usermod -a -G dialout facmon

if [ ! -x "$PREFIX/venv/bin/python" ]; then
    "$PYTHON" -m venv "$PREFIX/venv"
fi
"$PREFIX/venv/bin/pip" install -q --upgrade pip
"$PREFIX/venv/bin/pip" install -q --upgrade "$repo"

install -d -o root -g facmon -m 0750 "$ETC"
install -d -o facmon -g facmon -m 0750 "$STATE"
if [ ! -f "$ETC/site.yaml" ]; then
    "$PREFIX/venv/bin/facmon" config sample >"$ETC/site.yaml"
    # The sample's data_dir is relative to the file; under systemd it is the state directory.
    sed -i "s|^data_dir: .*|data_dir: $STATE|" "$ETC/site.yaml"
    chown root:facmon "$ETC/site.yaml"
    chmod 0640 "$ETC/site.yaml"
fi
if [ ! -f "$ETC/facmon.env" ]; then
    install -o root -g facmon -m 0640 "$here/facmon.env.example" "$ETC/facmon.env"
fi

install -o root -g root -m 0644 "$here/facmon.service" "$here/facmon@.service" "$UNITS/"
install -d -m 0755 "$DOCS"
install -o root -g root -m 0644 "$repo/deploy/OPERATIONS.md" "$DOCS/OPERATIONS.md"
systemctl daemon-reload

version=$("$PREFIX/venv/bin/facmon" --version)
cat <<MSG
Installed $version in $PREFIX/venv.

Next:
  1. Edit $ETC/site.yaml (devices, storage, tickets, api) and put the secrets it names as
     \${ENV} into $ETC/facmon.env.
  2. Check it as the service will load it:
       sudo -u facmon -- sh -c 'set -a; . $ETC/facmon.env; $PREFIX/venv/bin/facmon config check $ETC/site.yaml'
  3. With InfluxDB as the store, prepare it once:
       sudo -u facmon -- sh -c 'set -a; . $ETC/facmon.env; $PREFIX/venv/bin/facmon influx init --config $ETC/site.yaml'
  4. Start it (an upgrade: restart it; ticket database migrations run when it starts):
       systemctl enable --now facmon        # first install
       systemctl restart facmon             # upgrade
       journalctl -u facmon -f
MSG
