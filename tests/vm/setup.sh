#!/bin/bash
# tests/vm/setup.sh: install what the VM tests need and unpack a guest kernel.
#
# Installs (Debian 12, --no-install-recommends, only what is missing):
# qemu-system-x86, busybox-static, ndctl, daxctl, cpio, kmod, jq (jq runs in
# the guests too).  Then fetches the Debian cloud kernel package with
# `apt-get download` and unpacks it with `dpkg-deb -x` into the cache
# directory, unless it is already there; the kernel is never installed on
# the host.
#
#   SHMFS_VM_CACHE   cache directory (default /var/tmp/shmfs-vm)
#   SHMFS_VM_KPKG    kernel package to use (default: what linux-image-cloud-amd64
#                    depends on, e.g. linux-image-6.1.0-56-cloud-amd64)
#   SHMFS_VM_NO_INSTALL=1   skip apt-get install (packages already there)
#
# Prints the unpacked kernel directory on its last line:  KERNEL_DIR=<dir>
set -euo pipefail
CACHE=${SHMFS_VM_CACHE:-/var/tmp/shmfs-vm}
export DEBIAN_FRONTEND=noninteractive
log() { echo "setup: $*" >&2; }

PKGS=(qemu-system-x86 busybox-static ndctl daxctl cpio kmod jq)
need_install=0
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_install=1
done
if [ "${SHMFS_VM_NO_INSTALL:-0}" != 1 ] && [ $need_install = 1 ]; then
	[ "$(id -u)" = 0 ] || { log "need root to apt-get install ${PKGS[*]}"; exit 1; }
	log "installing ${PKGS[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
	APT_UPDATED=1
fi

mkdir -p "$CACHE"
# Which kernel: the cloud flavour (small, has every module we need as =m).
KPKG=${SHMFS_VM_KPKG:-}
if [ -z "$KPKG" ]; then
	KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: //p' | head -1)
	if [ -z "$KPKG" ] && [ -z "${APT_UPDATED:-}" ]; then
		apt-get update -qq
		KPKG=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: //p' | head -1)
	fi
fi
case "$KPKG" in
linux-image-*) ;;
*) log "cannot tell which kernel package to fetch (apt-cache depends linux-image-cloud-amd64 said '$KPKG')"; exit 1 ;;
esac

KDIR=$CACHE/$KPKG
if [ -f "$KDIR/.unpacked" ] && ls "$KDIR"/boot/vmlinuz-* >/dev/null 2>&1; then
	log "kernel $KPKG already unpacked in $KDIR"
else
	log "fetching $KPKG"
	tmp=$(mktemp -d "$CACHE/dl.XXXXXX"); chmod 755 "$tmp"  # apt runs downloads as _apt
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download -q "$KPKG" >/dev/null)
	rm -rf "$KDIR"
	mkdir -p "$KDIR.tmp.$$"
	dpkg-deb -x "$tmp"/"$KPKG"_*.deb "$KDIR.tmp.$$"
	ls "$KDIR.tmp.$$"/boot/vmlinuz-* >/dev/null
	touch "$KDIR.tmp.$$/.unpacked"
	mv -T "$KDIR.tmp.$$" "$KDIR" 2>/dev/null || rm -rf "$KDIR.tmp.$$"  # lost a race: keep theirs
	log "kernel unpacked in $KDIR"
fi
echo "KERNEL_DIR=$KDIR"
