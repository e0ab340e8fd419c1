#!/bin/bash
# tests/vm/build-initramfs.sh KERNEL_DIR BIN_DIR OUT.cpio.gz
#
# Builds the test guests' initramfs:
#   - busybox-static with its applet links;
#   - the kernel modules for NVDIMM/devdax and FUSE, from KERNEL_DIR (an
#     unpacked Debian kernel package, see setup.sh), with modules.dep;
#   - ndctl, daxctl, jq (and fusermount3 if present) from the host;
#   - the project's programs from BIN_DIR (REQUIRED_BINS must exist,
#     OPTIONAL_BINS and libshmfs*.so are taken when they do), each with the
#     shared libraries ldd lists;
#   - /init (guest-init.sh), /vm/lib.sh, and /scenarios/*.sh.
# To give the guests another program, add it to one of the lists below.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

REQUIRED_BINS="mkfs.shmfs shmfs-dump"
OPTIONAL_BINS="shmfs fsck.shmfs map-driver"
HOST_TOOLS="ndctl daxctl jq"
OPTIONAL_HOST_TOOLS="fusermount3"
MODULES="fuse nfit libnvdimm nd_pmem nd_btt dax_pmem device_dax kmem" # nd_btt: needed by nd_pmem; kmem: daxctl --mode=system-ram

[ $# = 3 ] || { echo "usage: $0 KERNEL_DIR BIN_DIR OUT.cpio.gz" >&2; exit 2; }
KROOT=$(cd "$1" && pwd)
BIN=$(cd "$2" && pwd)
OUT=$3
die() { echo "build-initramfs: $*" >&2; exit 1; }

KVER=$(ls "$KROOT/lib/modules")
[ "$(echo "$KVER" | wc -w)" = 1 ] || die "expected one kernel in $KROOT/lib/modules, found: $KVER"
R=$(mktemp -d "${TMPDIR:-/tmp}/shmfs-vm-rootfs.XXXXXX")
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,lib64,proc,sys,dev,tmp,mnt,etc,root,vm,scenarios}

# busybox
BB=$(command -v busybox) || die "busybox not found (apt-get install busybox-static)"
ldd "$BB" >/dev/null 2>&1 && die "$BB is not static (install busybox-static)"
cp "$BB" "$R/bin/busybox"
for a in $("$BB" --list); do
	[ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
done

# kernel modules (modprobe resolves dependencies through modules.dep)
for m in $MODULES; do
	f=$(find "$KROOT/lib/modules/$KVER" -name "$m.ko*" | head -n 1)
	[ -n "$f" ] || die "module $m not in $KROOT/lib/modules/$KVER"
	mkdir -p "$R$(dirname "${f#"$KROOT"}")"
	cp "$f" "$R${f#"$KROOT"}"
done
cp "$KROOT/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/"
depmod -b "$R" "$KVER"

# programs with their libraries
add_prog() { # SRC [DEST_DIR]
	cp -L "$1" "$R${2:-/usr/bin}/"
	for l in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do
		[ -e "$R$l" ] && continue
		mkdir -p "$R$(dirname "$l")"
		cp -L "$l" "$R$l"
	done
}
for t in $HOST_TOOLS; do
	p=$(command -v "$t") || die "$t not found on the host (run tests/vm/setup.sh)"
	add_prog "$p"
done
for t in $OPTIONAL_HOST_TOOLS; do
	if p=$(command -v "$t"); then add_prog "$p"; fi
done
for b in $REQUIRED_BINS; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing (build the project first: tools/build.sh)"
	add_prog "$BIN/$b" /usr/sbin
done
for b in $OPTIONAL_BINS; do
	[ -x "$BIN/$b" ] && add_prog "$BIN/$b" /usr/sbin
done
# glibc's pthread_cancel dlopen()s libgcc_s.so.1 (to unwind the cancelled
# thread); ldd does not list it.  libfuse cancels its worker threads when a
# mount ends: without it the daemon aborts at umount ("libgcc_s.so.1 must be
# installed for pthread_cancel to work") and leaves its host slot behind.
if [ -x "$R/usr/sbin/shmfs" ]; then
	l=$(ldconfig -p | awk '$1 == "libgcc_s.so.1" && /x86-64/ && !l { l = $NF } END { print l }')
	[ -n "$l" ] || die "libgcc_s.so.1 not found (ldconfig -p); the guest's shmfs needs it"
	mkdir -p "$R$(dirname "$l")"
	cp -L "$l" "$R$l"
fi
# Shared libraries of our own (if the project ever builds them), next to
# the binaries or in ../lib.  ldd above already copied those it resolved,
# at the same path (so a build-tree RUNPATH works in the guest too); these
# copies in /usr/lib, a default search directory, are for dlopen.
for l in "$BIN"/libshmfs*.so* "$BIN"/../lib/libshmfs*.so*; do
	[ -e "$l" ] || continue
	mkdir -p "$R/usr/lib"
	cp -L "$l" "$R/usr/lib/"
done

echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
echo 'root:x:0:' >"$R/etc/group"
echo 'shmfs-vm-guest' >"$R/etc/hostname"
cp "$HERE/guest-init.sh" "$R/init"
chmod 755 "$R/init"
cp "$HERE/lib.sh" "$R/vm/lib.sh"
cp "$HERE"/scenarios/*.sh "$R/scenarios/"

mkdir -p "$(dirname "$OUT")"
(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "build-initramfs: $OUT ($(du -h "$OUT" | cut -f1), kernel $KVER)" >&2
