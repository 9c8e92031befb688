#!/bin/sh
# Install RoomWarden as a systemd service on Debian 12 / Raspberry Pi OS (bookworm). Run as root
# from a checkout of the repository:
#
#   sudo systemd/install.sh [--start] [--ingest] [--dry-run] [--root DIR]
#
# What it does (each step only if not done yet, so it can be run again after `git pull`):
#   1. apt-get install python3 python3-venv (when missing);
#   2. a system user `roomwarden` (no login shell, home /var/lib/roomwarden) in group dialout;
#   3. a virtualenv in /opt/roomwarden/venv with this checkout pip-installed into it;
#   4. device profiles and rule packs in /usr/share/roomwarden/{profiles,rules};
#   5. /etc/roomwarden (root:roomwarden 0750) with the example gateway config if there is none
#      (gateway.yaml, root:roomwarden 0640 - an existing one is never overwritten);
#   6. /etc/modules-load.d/roomwarden.conf: the USB serial drivers load at boot, so the unit's
#      DeviceAllow=char-ttyUSB / char-ttyACM find their device numbers when it starts;
#   7. the units in /etc/systemd/system, daemon-reload, enable roomwarden.service (and
#      roomwarden-ingest.service with --ingest); started only with --start.
#
# --dry-run prints every action and changes nothing. --root DIR (or DESTDIR=DIR) puts every
# file under DIR and only prints the commands that act on the running system (apt-get,
# useradd, venv/pip, systemctl): for building an image, and for the tests.
set -eu

PREFIX_OPT=/opt/roomwarden
VENV=$PREFIX_OPT/venv
SHARE=/usr/share/roomwarden
DOC=/usr/share/doc/roomwarden
ETC=/etc/roomwarden
UNIT_DIR=/etc/systemd/system
MODULES_LOAD=/etc/modules-load.d/roomwarden.conf
USER_NAME=roomwarden
HOME_DIR=/var/lib/roomwarden
SOURCE=$(cd "$(dirname "$0")/.." && pwd)

DRY_RUN=0
START=0
INGEST=0
ROOT=${DESTDIR:-}

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --start) START=1 ;;
        --ingest) INGEST=1 ;;
        --root) [ $# -ge 2 ] || { echo "--root needs a directory" >&2; exit 2; }
                ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --source) [ $# -ge 2 ] || { echo "--source needs a directory" >&2; exit 2; }
                  SOURCE=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
ROOT=${ROOT%/}

# run CMD...: a command that changes this machine (printed; skipped in --dry-run and --root)
run() {
    if [ "$DRY_RUN" = 1 ] || [ -n "$ROOT" ]; then
        echo "would run: $*"
    else
        echo "+ $*"
        "$@"
    fi
}

# fs CMD...: a file-system action under $ROOT (printed; skipped in --dry-run)
fs() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "would run: $*"
    else
        echo "+ $*"
        "$@"
    fi
}

# owner SPEC PATH: chown, except in --root (the user exists only on the target)
owner() {
    if [ -n "$ROOT" ]; then
        echo "would run: chown $1 $2"
    else
        fs chown "$1" "$2"
    fi
}

if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh must run as root (or with --dry-run / --root DIR)" >&2
    exit 1
fi
for f in pyproject.toml systemd/roomwarden.service systemd/roomwarden-ingest.service \
         firmware_configs/telecom_equipment_room.yaml; do
    [ -f "$SOURCE/$f" ] || { echo "not a RoomWarden checkout: $SOURCE ($f missing)" >&2; exit 1; }
done
echo "RoomWarden install from $SOURCE${ROOT:+ into $ROOT}$( [ "$DRY_RUN" = 1 ] && echo ' (dry run)')"

# 1. Debian packages
missing=""
for p in python3 python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    run apt-get update -qq
    # shellcheck disable=SC2086  # one argument per package name
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

# 2. the service user
if getent passwd "$USER_NAME" >/dev/null 2>&1 && [ -z "$ROOT" ]; then
    id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx dialout || run usermod -a -G dialout "$USER_NAME"
else
    run useradd --system --user-group --groups dialout --home-dir "$HOME_DIR" \
        --no-create-home --shell /usr/sbin/nologin --comment "RoomWarden gateway" "$USER_NAME"
fi

# 3. the virtualenv and the package
if [ -x "$ROOT$VENV/bin/python" ]; then
    echo "keeping the virtualenv $VENV"
else
    run python3 -m venv "$VENV"
fi
run "$VENV/bin/pip" install --quiet --upgrade pip
run "$VENV/bin/pip" install --quiet --upgrade "$SOURCE"

# 4. profiles, rule packs (the package looks there when it is not a checkout) and the README
fs mkdir -p "$ROOT$SHARE" "$ROOT$DOC"
fs install -m 0644 "$SOURCE/README.md" "$ROOT$DOC/README.md"
for pair in "hardware/profiles:profiles" "edge_rules:rules"; do
    src=$SOURCE/${pair%%:*}
    dst=$ROOT$SHARE/${pair##*:}
    fs rm -rf "$dst.new"
    fs cp -R "$src" "$dst.new"
    fs rm -rf "$dst"
    fs mv "$dst.new" "$dst"
done

# 5. configuration
fs install -d -m 0750 "$ROOT$ETC"
owner root:$USER_NAME "$ROOT$ETC"
if [ -e "$ROOT$ETC/gateway.yaml" ]; then
    echo "keeping $ROOT$ETC/gateway.yaml"
else
    fs install -m 0640 "$SOURCE/firmware_configs/telecom_equipment_room.yaml" "$ROOT$ETC/gateway.yaml"
    owner root:$USER_NAME "$ROOT$ETC/gateway.yaml"
fi

# 6. serial drivers at boot
fs mkdir -p "$ROOT$(dirname "$MODULES_LOAD")"
if [ "$DRY_RUN" = 1 ]; then
    echo "would write: $ROOT$MODULES_LOAD (usbserial, cdc_acm)"
else
    echo "+ write $ROOT$MODULES_LOAD"
    cat > "$ROOT$MODULES_LOAD" <<'EOF'
# RoomWarden: load the USB serial drivers at boot, so that DeviceAllow=char-ttyUSB and
# char-ttyACM in roomwarden.service find their device numbers when the service starts.
usbserial
cdc_acm
EOF
fi

# 7. units
fs mkdir -p "$ROOT$UNIT_DIR"
for unit in roomwarden.service roomwarden-ingest.service; do
    fs install -m 0644 "$SOURCE/systemd/$unit" "$ROOT$UNIT_DIR/$unit"
done
run systemctl daemon-reload
run systemctl enable roomwarden.service
if [ "$INGEST" = 1 ]; then
    run systemctl enable roomwarden-ingest.service
fi
if [ "$START" = 1 ]; then
    run systemctl restart roomwarden.service
    if [ "$INGEST" = 1 ]; then
        run systemctl restart roomwarden-ingest.service
    fi
fi

cat <<EOF

Done. Next steps:
  1. edit $ETC/gateway.yaml for this site (serial ports, devices, panel.bind), then check it:
       sudo -u $USER_NAME $VENV/bin/roomwarden check $ETC/gateway.yaml
  2. start it:            sudo systemctl start roomwarden
  3. watch it:            systemctl status roomwarden; journalctl -u roomwarden -f
  Central side: put central.yaml in $ETC, run this script with --ingest, then
                          sudo systemctl start roomwarden-ingest
EOF
