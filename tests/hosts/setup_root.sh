#!/bin/bash
# Build a Debian chroot with GIMP 3 (+ Python plug-in support), Krita 5 (+ PyQt5), pyzmq and
# Xvfb. Host: Debian 12 bookworm, root. Host apt sources untouched. The suite picks the host pair:
#   SUITE=trixie ROOT=/opt/trixie bash setup_root.sh   # GIMP 3.0, Krita 5.2, Python 3.13 (default)
#   SUITE=sid    ROOT=/opt/sid    bash setup_root.sh   # GIMP 3.2, Krita 5.3, Python 3.14
. "$(dirname "$0")/lib.sh"
SUITE=${SUITE:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
T0=$(date +%s)

# .ci/run builds both roots side by side: on a fresh host both would run the host's apt at once
# and the second dies on apt's lock ("Could not get lock /var/lib/apt/lists/lock"), so take turns.
install_debootstrap() {
    command -v debootstrap >/dev/null && return
    log "installing debootstrap (bookworm, host)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
}
exec 9>/tmp/sine-host-apt.lock
flock 9
install_debootstrap
flock -u 9
exec 9>&-

if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    log "debootstrap $SUITE -> $ROOT"
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"/tmp/sine-root-debootstrap-$SUITE.log" 2>&1 \
        || { tail -20 "/tmp/sine-root-debootstrap-$SUITE.log"; exit 1; }
fi
T1=$(date +%s)

mount_root
# never start services inside the chroot
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"

log "apt-get install (gimp, krita, python3-gi, python3-pyqt5, python3-zmq, xvfb)"
# x11-utils/x11-apps: xwininfo/xwd, to see what a hung Xvfb run is showing (debug only)
chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    EXTRA_PKGS="${EXTRA_PKGS-x11-utils x11-apps}" \
    sh -c 'apt-get -o Acquire::Check-Valid-Until=false update -q && apt-get install -y -q --no-install-recommends \
        gimp gir1.2-gimp-3.0 python3-gi python3 python3-zmq \
        krita python3-pyqt5 \
        xvfb xauth dbus dbus-x11 $EXTRA_PKGS && apt-get clean' >"/tmp/sine-root-apt-$SUITE.log" 2>&1 \
    || { tail -30 "/tmp/sine-root-apt-$SUITE.log"; exit 1; }
T2=$(date +%s)

chroot "$ROOT" id "$RC_USER" >/dev/null 2>&1 || chroot "$ROOT" useradd -m -s /bin/bash "$RC_USER"

log "versions:"
chroot "$ROOT" dpkg-query -W -f '  ${Package} ${Version}\n' gimp krita python3 python3-zmq python3-pyqt5 xvfb >&2
log "debootstrap $((T1-T0)) s, apt install $((T2-T1)) s, total $((T2-T0)) s; size $(du -sxh "$ROOT" | cut -f1)"
