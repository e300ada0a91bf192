#!/usr/bin/env bash
# Debian chroots with other CPython versions, for CI and for local checks (needs root).
#
#   tools/pyenvs.sh build [SUITE...]      build the missing chroots (default: trixie forky); reuse
#                                         the ones already built (marker file .fastjoblib-ready)
#   tools/pyenvs.sh run SUITE CMD [ARG...] run CMD inside the chroot with /proc, /sys (ro) and a
#                                         fresh /dev/shm (tmpfs) mounted; unmounted on exit
#   tools/pyenvs.sh path SUITE            print the chroot's directory
#
#   trixie (Debian 13): python3.13 (+ -dev, -venv, libpython3.13-testsuite)
#   forky  (Debian 14): python3.14 (+ -dev, -venv, libpython3.14-testsuite) and python3.14-dbg
#
# The chroots live outside the repository in $FASTJOBLIB_PYENVS (default
# /var/cache/fastjoblib-pyenvs) and are kept between runs; delete a directory to rebuild it.
# A build goes to SUITE.tmp and is renamed when complete, so an interrupted build never looks
# ready. Knobs: FASTJOBLIB_PYENVS, FASTJOBLIB_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

CACHE="${FASTJOBLIB_PYENVS:-/var/cache/fastjoblib-pyenvs}"
MIRROR="${FASTJOBLIB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
COMMON_PKGS="locales,ca-certificates,build-essential,zlib1g-dev,libbz2-dev,liblzma-dev,python3-dev,python3-venv"

suite_pkgs() {
    case "$1" in
        trixie) echo "$COMMON_PKGS,python3.13-dev,python3.13-venv,libpython3.13-testsuite" ;;
        forky) echo "$COMMON_PKGS,python3.14-dev,python3.14-venv,libpython3.14-testsuite,python3.14-dbg" ;;
        *) echo "pyenvs: unknown suite '$1' (trixie or forky)" >&2; return 1 ;;
    esac
}

suite_python() {
    case "$1" in
        trixie) echo python3.13 ;;
        forky) echo python3.14 ;;
    esac
}

need_root() {
    [[ "$(id -u)" == 0 ]] || { echo "pyenvs: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
}

# CPython's pickletester checks float formatting under the de_DE and fr_FR locales (skipped
# where they are missing): generate them, in a fresh chroot and in one built before this step.
ensure_locales() {
    local root="$1"
    chroot "$root" locale -a 2>/dev/null | grep -qx de_DE && return 0
    if [[ ! -d "$root/usr/share/i18n/locales" ]]; then
        cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
        chroot "$root" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get -o Acquire::Check-Valid-Until=false update -qq &&
            apt-get install -y -qq --no-install-recommends locales' >"$root.locales.log" 2>&1 || {
            echo "pyenvs: locales not installed in $root (see $root.locales.log)" >&2
            return 0
        }
    fi
    chroot "$root" sh -c 'localedef -i de_DE -f ISO-8859-1 de_DE &&
        localedef -i fr_FR -f ISO-8859-1 fr_FR' >/dev/null 2>&1 ||
        echo "pyenvs: localedef failed in $root" >&2
    return 0
}

build_one() {
    local suite="$1" root="$CACHE/$1" pkgs script=""
    pkgs="$(suite_pkgs "$suite")"
    if [[ -f "$root/.fastjoblib-ready" ]]; then
        echo "pyenvs: $suite: reusing $root"
        ensure_locales "$root"
        return 0
    fi
    command -v debootstrap >/dev/null || {
        echo "pyenvs: installing debootstrap" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
    }
    # an older debootstrap has no script for a newer suite: they all follow sid's
    [[ -e "/usr/share/debootstrap/scripts/$suite" ]] || script=/usr/share/debootstrap/scripts/sid
    mkdir -p "$CACHE"
    rm -rf "$root.tmp"
    echo "pyenvs: $suite: debootstrap into $root.tmp ($(date -u +%H:%M:%S))"
    local t0=$SECONDS
    debootstrap --variant=minbase --include="$pkgs" "$suite" "$root.tmp" "$MIRROR" $script \
        >"$CACHE/$suite.log" 2>&1 || {
        echo "pyenvs: $suite: debootstrap failed, last lines of $CACHE/$suite.log:" >&2
        tail -20 "$CACHE/$suite.log" >&2
        return 1
    }
    # pip inside the chroot verifies TLS with the host's CA bundle
    cp /etc/ssl/certs/ca-certificates.crt "$root.tmp/etc/ssl/certs/ca-certificates.crt"
    cp /etc/resolv.conf "$root.tmp/etc/resolv.conf" 2>/dev/null || true
    chroot "$root.tmp" "$(suite_python "$suite")" -c 'import sys, test.pickletester; print(sys.version)'
    ensure_locales "$root.tmp"
    date -u +%FT%TZ >"$root.tmp/.fastjoblib-ready"
    mv "$root.tmp" "$root"
    echo "pyenvs: $suite: built in $((SECONDS - t0)) s"
}

run_in() {
    local suite="$1"; shift
    local root="$CACHE/$suite"
    [[ -f "$root/.fastjoblib-ready" ]] || { echo "pyenvs: $suite not built ($root)" >&2; exit 1; }
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    local mounted=()
    umount_all() {
        local i
        for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
            umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" || true
        done
    }
    trap umount_all EXIT
    mkdir -p "$root/proc" "$root/sys" "$root/dev/shm"
    mount -t proc proc "$root/proc" && mounted+=("$root/proc")
    mount -t sysfs -o ro sysfs "$root/sys" && mounted+=("$root/sys")
    mount -t tmpfs -o mode=1777,size=4g tmpfs "$root/dev/shm" && mounted+=("$root/dev/shm")
    local rc=0
    chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 TERM=dumb ${FASTJOBLIB_TEST_SWEEP:+FASTJOBLIB_TEST_SWEEP=$FASTJOBLIB_TEST_SWEEP} \
        "$@" || rc=$?
    umount_all
    trap - EXIT
    return $rc
}

cmd="${1:-}"; shift || true
case "$cmd" in
    build)
        need_root
        [[ $# -gt 0 ]] || set -- trixie forky
        for s in "$@"; do build_one "$s"; done
        ;;
    run)
        need_root
        [[ $# -ge 2 ]] || { echo "usage: $0 run SUITE CMD [ARG...]" >&2; exit 2; }
        run_in "$@"
        ;;
    path)
        echo "$CACHE/$1"
        ;;
    *)
        sed -n '2,16p' "$0" >&2
        exit 2
        ;;
esac
