#!/bin/sh
# Installs goe-bridge as a systemd service (Raspberry Pi OS, Debian, Ubuntu).
#
#   sudo ./systemd/install.sh [--prefix /opt/goe-bridge] [--no-start]
#
# - a virtual environment under PREFIX with goe-bridge from this checkout
# - /etc/goe-bridge/config.yaml from config.example.yaml (only if there is none yet)
# - the system user goe-bridge, the unit goe-bridge.service, enabled; started only once the
#   config is yours (not the example) and `goe-bridge check-config` passes on it
# Running it again upgrades the installation and keeps the config. DESTDIR=/some/dir stages
# everything below that folder without touching the system (no user, no systemctl); the staged
# tree can be moved to / as it is (its scripts name PREFIX, not the staging folder).
set -eu

PREFIX=/opt/goe-bridge
START=yes
PYTHON=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --no-start) START=no; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
DESTDIR=${DESTDIR:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)
VENV="$DESTDIR$PREFIX"
ETC="$DESTDIR/etc/goe-bridge"
UNIT_DIR="$DESTDIR/etc/systemd/system"
USER_NAME=goe-bridge

say() { printf '%s\n' "install.sh: $*"; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or set DESTDIR to stage the files" >&2
    exit 1
fi

# 1. the user (system installs only)
if [ -z "$DESTDIR" ] && ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"
    say "created user $USER_NAME"
fi

# 2. the virtual environment
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    say "created $VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SRC"
if [ -n "$DESTDIR" ]; then
    # pip wrote the staging path into every script's shebang (and the activate scripts):
    # point them at where the tree will live
    grep -rlI -- "$VENV" "$VENV/bin" | while read -r f; do
        sed -i "s#$VENV#$PREFIX#g" "$f"
    done
fi
say "installed goe-bridge $("$VENV/bin/python" -m bridge --version | cut -d' ' -f2) into $VENV"
# the guides beside it, where the unit's Documentation= points
mkdir -p "$VENV/share/doc/goe-bridge"
cp "$SRC/README.md" "$SRC/config.example.yaml" "$SRC/goe-bridge.schema.json" \
    "$VENV/share/doc/goe-bridge/"
cp -r "$SRC/docs" "$VENV/share/doc/goe-bridge/"

# 3. the config: never overwritten
mkdir -p "$ETC"
chmod 0750 "$ETC"
# the JSON Schema beside it, where the config's yaml-language-server line points (editors)
cp "$SRC/goe-bridge.schema.json" "$ETC/"
if [ ! -f "$ETC/config.yaml" ]; then
    cp "$SRC/config.example.yaml" "$ETC/config.yaml"
    say "wrote $ETC/config.yaml: edit it, then: sudo systemctl restart goe-bridge"
fi
chmod 0640 "$ETC/config.yaml"
if [ -z "$DESTDIR" ]; then
    chown -R "root:$USER_NAME" "$ETC"
fi

# 4. the unit, pointing at this prefix
mkdir -p "$UNIT_DIR"
sed "s#/opt/goe-bridge#$PREFIX#g" "$SRC/systemd/goe-bridge.service" > "$UNIT_DIR/goe-bridge.service.tmp"
mv "$UNIT_DIR/goe-bridge.service.tmp" "$UNIT_DIR/goe-bridge.service"
chmod 0644 "$UNIT_DIR/goe-bridge.service"
say "installed $UNIT_DIR/goe-bridge.service"

# 5. enable, and start only a config the user wrote and that passes check-config: the
#    example polls 192.168.178.50 and expects a local broker
next_step() {
    say "next: edit $ETC/config.yaml, check it with"
    say "  sudo -u $USER_NAME $PREFIX/bin/goe-bridge check-config -c /etc/goe-bridge/config.yaml"
    say "then: sudo systemctl restart goe-bridge"
}
if [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
    systemctl enable goe-bridge.service
    if [ "$START" = no ]; then
        say "enabled, not started (--no-start)"
    elif cmp -s "$ETC/config.yaml" "$SRC/config.example.yaml"; then
        say "enabled, not started: $ETC/config.yaml is still the example"
        next_step
    elif ! runuser -u "$USER_NAME" -- "$VENV/bin/goe-bridge" check-config -c "$ETC/config.yaml" >/dev/null; then
        say "enabled, not started: $ETC/config.yaml has problems (listed above)"
        next_step
    else
        systemctl restart goe-bridge.service
        say "goe-bridge is running: systemctl status goe-bridge; journalctl -u goe-bridge -f"
    fi
elif [ -n "$DESTDIR" ]; then
    say "staged below $DESTDIR; after moving it to /: systemctl daemon-reload && systemctl enable goe-bridge"
fi
