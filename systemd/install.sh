#!/bin/sh
# Install or upgrade RoomWarden as a systemd service on Debian 12 / Raspberry Pi OS (bookworm).
# Run as root from a checkout of the repository (again after `git pull` to upgrade):
#
#   sudo systemd/install.sh [--start] [--ingest] [--force] [--dry-run] [--root DIR]
#
# An upgrade is staged beside the installed version, checked, and only then switched to, so a
# version that refuses this site's config never replaces the one that runs it:
#   1. apt-get install python3 python3-venv (when missing);
#   2. a system user `roomwarden` (no login shell, home /var/lib/roomwarden) in group dialout;
#   3. stage: a new virtualenv /opt/roomwarden/venv.new (made afresh each run; pip itself is
#      not upgraded) with this checkout pip-installed into it, its dependencies at the versions
#      it was tested with (constraints.txt), and the device profiles and rule
#      packs as /usr/share/roomwarden/{profiles,rules}.new. A file in the installed profiles/
#      that this checkout does not ship (a site's own profile) is carried over, with a warning:
#      a site's profiles belong in /etc/roomwarden/profiles (`profiles_dir: profiles`);
#   4. check: the NEW version runs `roomwarden check` (as roomwarden) on every config the
#      gateway may boot - /etc/roomwarden/gateway.yaml and the flashed active config
#      /var/lib/roomwarden/config/active/config.yaml - with the staged profiles and rule packs
#      (ROOMWARDEN_PROFILES, ROOMWARDEN_RULES). If one fails, the staged copies are removed and
#      the script exits 1: the installed version, its files and the running service are left as
#      they were. --force switches anyway (the gateway will then not start until it is fixed);
#   5. switch: venv -> venv.previous, venv.new -> venv, and the same for profiles and rules (one
#      .previous of each is kept for a manual rollback; the final message says how); compile the
#      byte-code the unit reads into /var/cache/roomwarden (the first start then compiles none);
#   6. /etc/roomwarden (root:roomwarden 0750) with the example gateway config if there is none
#      (gateway.yaml, root:roomwarden 0640 - an existing one is never overwritten);
#   7. /etc/modules-load.d/roomwarden.conf: the USB serial drivers load at boot, so the unit's
#      DeviceAllow=char-ttyUSB / char-ttyACM find their device numbers when it starts;
#   8. the units in /etc/systemd/system, daemon-reload, enable roomwarden.service (not while
#      gateway.yaml is the example just installed, unless --start: it would poll and switch
#      outputs at the example's addresses at the next boot) and roomwarden-ingest.service with
#      --ingest; a running service is restarted on the new
#      version (systemctl try-restart: old code never runs with the new rule packs); nothing is
#      started unless --start is given.
#
# --dry-run prints every action and changes nothing. --root DIR (or DESTDIR=DIR) puts every
# file under DIR and only prints the commands that act on the running system (apt-get,
# useradd, venv/pip, systemctl): for building an image, and for the tests. --root cannot make
# the virtualenv, so its check needs CHECK_PYTHON: a Python with RoomWarden's dependencies
# (e.g. a development venv's), run as `$CHECK_PYTHON -m gateway check` with PYTHONPATH=<this
# checkout>; without it the check is skipped (said in the output).
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
FLASHED=$HOME_DIR/config/active/config.yaml
SOURCE=$(cd "$(dirname "$0")/.." && pwd)

DRY_RUN=0
START=0
INGEST=0
FORCE=0
ROOT=${DESTDIR:-}

usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --start) START=1 ;;
        --ingest) INGEST=1 ;;
        --force) FORCE=1 ;;
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

# venv_cmd CMD...: a command on the virtualenvs, which exist only on the running system
venv_cmd() {
    run "$@"
}

if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh must run as root (or with --dry-run / --root DIR)" >&2
    exit 1
fi
for f in pyproject.toml constraints.txt systemd/roomwarden.service systemd/roomwarden-ingest.service \
         firmware_configs/telecom_equipment_room.yaml hardware/profiles edge_rules; do
    [ -e "$SOURCE/$f" ] || { echo "not a RoomWarden checkout: $SOURCE ($f missing)" >&2; exit 1; }
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

# 3. stage the new version beside the installed one
unstage() {
    venv_cmd rm -rf "$VENV.new"
    fs rm -rf "$ROOT$SHARE/profiles.new" "$ROOT$SHARE/rules.new"
}
CHECK_COPY=""
cleanup_check_copy() {
    if [ -n "$CHECK_COPY" ]; then
        rm -f "$CHECK_COPY"
        CHECK_COPY=""
    fi
}
trap cleanup_check_copy EXIT
trap 'cleanup_check_copy; exit 130' INT TERM

venv_cmd rm -rf "$VENV.new"
venv_cmd python3 -m venv "$VENV.new"
if ! venv_cmd "$VENV.new/bin/pip" install --quiet --disable-pip-version-check \
        -c "$SOURCE/constraints.txt" "$SOURCE"
then
    unstage
    echo "pip could not install $SOURCE into $VENV.new (offline? its dependencies come from" \
         "the package index): nothing was switched, the installed version is unchanged" >&2
    exit 1
fi

fs mkdir -p "$ROOT$SHARE"
for pair in "hardware/profiles:profiles" "edge_rules:rules"; do
    dst=$ROOT$SHARE/${pair##*:}
    fs rm -rf "$dst.new"
    fs cp -R "$SOURCE/${pair%%:*}" "$dst.new"
done
# a site's own profiles in the installed profiles/ (not shipped by this checkout) go along
carried=""
if [ -d "$ROOT$SHARE/profiles" ]; then
    for f in "$ROOT$SHARE/profiles"/* "$ROOT$SHARE/profiles"/.[!.]*; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        name=$(basename "$f")
        [ -e "$SOURCE/hardware/profiles/$name" ] && continue
        fs cp -pR "$f" "$ROOT$SHARE/profiles.new/$name"
        carried="$carried $name"
    done
fi
if [ -n "$carried" ]; then
    echo "WARNING: $SHARE/profiles holds files this version does not ship:$carried" >&2
    echo "  they are carried over into the new $SHARE/profiles; move them to" \
         "$ETC/profiles and set \`profiles_dir: profiles\` in $ETC/gateway.yaml:" \
         "$SHARE/profiles is the shipped library, replaced by every upgrade" >&2
fi

# 4. the new version checks every config the gateway may boot, with the staged files
if [ -z "$ROOT" ]; then
    CHECK_MODE=venv
    if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1 \
            && getent passwd "$USER_NAME" >/dev/null 2>&1; then
        AS_USER="runuser -u $USER_NAME --"
    else
        AS_USER=""
    fi
elif [ -n "${CHECK_PYTHON:-}" ]; then
    CHECK_MODE=python
    AS_USER=""
else
    CHECK_MODE=skip
    AS_USER=""
fi

# check_one FILE: `roomwarden check FILE` by the new version; prints what it says. A config
# outside $ETC (the flashed one) is checked as a copy in $ETC, as the gateway reads it: its
# relative paths (profiles_dir, secrets) are from $ETC.
check_one() {
    file=$1
    target=$file
    if [ "$(dirname "$file")" != "$ROOT$ETC" ] && [ -d "$ROOT$ETC" ] && [ "$DRY_RUN" = 0 ]; then
        CHECK_COPY=$ROOT$ETC/.install-check-$$.yaml
        cp "$file" "$CHECK_COPY"
        chmod 0640 "$CHECK_COPY"
        [ -n "$ROOT" ] || chown "root:$USER_NAME" "$CHECK_COPY"
        target=$CHECK_COPY
        echo "  (as a copy in $ETC, where the gateway resolves the paths in it)"
    fi
    # shellcheck disable=SC2086  # AS_USER is empty or `runuser -u roomwarden --`
    if [ "$CHECK_MODE" = venv ]; then
        set -- $AS_USER env ROOMWARDEN_PROFILES="$SHARE/profiles.new" \
            ROOMWARDEN_RULES="$SHARE/rules.new" "$VENV.new/bin/roomwarden" check "$target"
    else
        set -- env PYTHONPATH="$SOURCE" PYTHONSAFEPATH=1 \
            ROOMWARDEN_PROFILES="$ROOT$SHARE/profiles.new" ROOMWARDEN_RULES="$ROOT$SHARE/rules.new" \
            "$CHECK_PYTHON" -m gateway check "$target"
    fi
    if [ "$DRY_RUN" = 1 ]; then
        echo "would run: $*"
        return 0
    fi
    echo "+ $*"
    # from / (the roomwarden user may not enter this checkout); its paths are absolute there
    if [ "$CHECK_MODE" = venv ]; then
        if said=$(cd / && "$@" 2>&1); then status=0; else status=$?; fi
    elif said=$("$@" 2>&1); then status=0; else status=$?; fi
    if [ "$target" != "$file" ]; then
        cleanup_check_copy
        pattern=$(printf '%s\n' "$target" | sed 's/[].[\*^$|]/\\&/g')
        replacement=$(printf '%s\n' "$file" | sed 's/[\\|&]/\\&/g')
        said=$(printf '%s\n' "$said" | sed "s|$pattern|$replacement|g")
    fi
    printf '%s\n' "$said" | sed 's/^/    /'
    return "$status"
}

failed=""
checked=0
for file in "$ROOT$ETC/gateway.yaml" "$ROOT$FLASHED"; do
    [ -e "$file" ] || continue
    checked=$((checked + 1))
    if [ "$CHECK_MODE" = skip ]; then
        echo "config check SKIPPED for $file: --root cannot run the new virtualenv (set" \
             "CHECK_PYTHON to a Python with RoomWarden's dependencies to check it)"
        continue
    fi
    echo "checking $file with the new version:"
    check_one "$file" || failed="$failed $file"
done
if [ "$checked" = 0 ]; then
    echo "no config to check yet ($ETC/gateway.yaml will be the example config)"
fi
if [ -n "$failed" ]; then
    echo >&2
    echo "The new version refuses the config(s):$failed" >&2
    echo "(the errors are above): it would not boot them after this upgrade." >&2
    if [ "$FORCE" = 1 ]; then
        echo "WARNING: --force: switching to the new version ANYWAY. The gateway will not" \
             "start (no polling, no alarms, no outputs) until the config is fixed." >&2
    else
        unstage
        echo "Nothing was switched: the installed version, its files and the running service" \
             "are unchanged." >&2
        echo "Fix: correct each config above so that this version accepts it (edit" \
             "$ETC/gateway.yaml; apply or flash a corrected config for the flashed one, from" \
             "the running version), then run install.sh again. --force switches anyway." >&2
        exit 1
    fi
fi

# 5. switch: installed -> .previous, staged -> installed
# switch ACT DIR: DIR -> DIR.previous (the older one removed), DIR.new -> DIR; ACT does it
had_previous=0
switch() {
    act=$1 dir=$2
    if [ -e "$dir" ] || [ -L "$dir" ] || { [ -n "$ROOT" ] && [ "$act" = venv_cmd ]; }; then
        [ "$act" = venv_cmd ] || had_previous=1
        "$act" rm -rf "$dir.previous"
        "$act" mv "$dir" "$dir.previous"
    fi
    "$act" mv "$dir.new" "$dir"
}
# the new venv's scripts name venv.new in their #! lines (and activate, pyvenv.cfg): make them
# name the place it is moved to (ExecStart runs $VENV/bin/roomwarden)
if [ "$DRY_RUN" = 1 ] || [ -n "$ROOT" ]; then
    echo "would run: sed -i 's|$VENV.new|$VENV|g' on the scripts in $VENV.new/bin and its" \
         "pyvenv.cfg"
else
    echo "+ sed -i 's|$VENV.new|$VENV|g' on the scripts in $VENV.new/bin and its pyvenv.cfg"
    venv_new_re=$(printf '%s\n' "$VENV.new" | sed 's/[].[\*^$|]/\\&/g')
    for f in "$VENV.new"/bin/* "$VENV.new/pyvenv.cfg"; do
        if [ -f "$f" ] && [ ! -L "$f" ] && grep -qF "$VENV.new" "$f"; then
            sed -i "s|$venv_new_re|$VENV|g" "$f"
        fi
    done
fi
switch venv_cmd "$VENV"
# the byte-code the unit reads (PYTHONOPTIMIZE=2, without column tables as the unit's
# PYTHONNODEBUGRANGES=1 compiles it, in its cache directory, and the config check's plain one)
# compiled now rather than at the first start, when the site is not polled meanwhile
# (gateway/precompile.py); the unit's CacheDirectory= keeps the directory its user's
CACHE=/var/cache/roomwarden
fs install -d -m 0750 "$ROOT$CACHE"
if ! venv_cmd env PYTHONPYCACHEPREFIX="$CACHE/pycache" PYTHONNODEBUGRANGES=1 \
        "$VENV/bin/python" -m gateway.precompile
then
    echo "warning: the byte-code could not be compiled now: the first start compiles it" >&2
fi
owner "$USER_NAME:$USER_NAME" "$ROOT$CACHE"
venv_cmd chown -R "$USER_NAME:$USER_NAME" "$CACHE/pycache"
for d in profiles rules; do
    switch fs "$ROOT$SHARE/$d"
done
fs mkdir -p "$ROOT$DOC"
fs install -m 0644 "$SOURCE/README.md" "$ROOT$DOC/README.md"

# 6. configuration
fs install -d -m 0750 "$ROOT$ETC"
owner root:$USER_NAME "$ROOT$ETC"
EXAMPLE_CONFIG=0
if [ -e "$ROOT$ETC/gateway.yaml" ]; then
    echo "keeping $ROOT$ETC/gateway.yaml"
else
    fs install -m 0640 "$SOURCE/firmware_configs/telecom_equipment_room.yaml" "$ROOT$ETC/gateway.yaml"
    owner root:$USER_NAME "$ROOT$ETC/gateway.yaml"
    EXAMPLE_CONFIG=1
fi

# 7. serial drivers at boot
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

# 8. units; the running service restarted on the new version
fs mkdir -p "$ROOT$UNIT_DIR"
for unit in roomwarden.service roomwarden-ingest.service; do
    fs install -m 0644 "$SOURCE/systemd/$unit" "$ROOT$UNIT_DIR/$unit"
done
run systemctl daemon-reload
if [ "$EXAMPLE_CONFIG" = 1 ] && [ "$START" = 0 ]; then
    # the example config polls /dev/ttyUSB0 and switches outputs at its addresses: a gateway
    # must not start on it at the next boot before someone made it this site's
    echo "roomwarden.service NOT enabled: $ETC/gateway.yaml is the example config; edit and" \
         "check it, then: sudo systemctl enable --now roomwarden"
else
    run systemctl enable roomwarden.service
fi
if [ "$INGEST" = 1 ]; then
    run systemctl enable roomwarden-ingest.service
fi
restarted=""
if [ "$START" = 1 ]; then
    run systemctl restart roomwarden.service
    if [ "$INGEST" = 1 ]; then
        run systemctl restart roomwarden-ingest.service
    fi
else
    echo "a running service is restarted on the new version (try-restart; a stopped one stays" \
         "stopped): the old version must not run on with the new rule packs and files"
    for unit in roomwarden.service roomwarden-ingest.service; do
        if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && systemctl is-active --quiet "$unit"; then
            echo "$unit runs the previous version: restarting it"
            restarted="$restarted $unit"
        fi
        run systemctl try-restart "$unit"
    done
fi

if [ "$START" = 1 ]; then
    running="(re)started on the new version"
elif [ -n "$restarted" ]; then
    running="restarted on the new version:$restarted"
else
    running="not started by this script (--start starts it)"
fi
cat <<EOF

Done. Services $running.
EOF
if [ "$had_previous" = 1 ]; then
    cat <<EOF
The version this replaced is kept as $VENV.previous and $SHARE/{profiles,rules}.previous
(the next upgrade replaces them). To go back to it:
  sudo systemctl stop roomwarden
  for d in $VENV $SHARE/profiles $SHARE/rules; do
      sudo rm -rf "\$d.bad"; sudo mv "\$d" "\$d.bad" && sudo mv "\$d.previous" "\$d"; done
  sudo systemctl start roomwarden
EOF
fi
cat <<EOF
Next steps:
  1. edit $ETC/gateway.yaml for this site (serial ports, devices, panel.bind), then check it:
       sudo -u $USER_NAME $VENV/bin/roomwarden check $ETC/gateway.yaml
  2. start it, and at every boot:  sudo systemctl enable --now roomwarden
  3. watch it:            systemctl status roomwarden; journalctl -u roomwarden -f
  Central side: put central.yaml in $ETC, run this script with --ingest, then
                          sudo systemctl start roomwarden-ingest
EOF
