#!/bin/sh
# /init of the test guests (busybox ash).  Sets the machine up, runs one
# scenario function, prints RESULT lines on ttyS0 and powers off.
#
# Kernel command line (all set by run.sh):
#   shmfs.scenario=NAME   run guest_<role> from /scenarios/NAME.sh
#   shmfs.role=N          1 or 2
#   shmfs.phase=P         which boot of the scenario (1, the default, or 2):
#                         phase P > 1 runs guest_<role>_phase<P> instead
#   shmfs.wait=S          watchdog: give up (RESULT watchdog FAIL) after S s
#   shmfs.fmt=1           instead: format the NVDIMM's raw namespace as devdax
#                         (--map=mem) and report RESULT format PASS|FAIL
#   shmfs.v.KEY=VALUE     exported to the scenario as KEY=VALUE
#
# What the scenario gets in its environment:
#   ROLE PHASE SCENARIO WAIT, every shmfs.v.* variable, and
#   DAX=/dev/dax0.0 DAX_SIZE DAX_ALIGN (bytes) DAX_NVDIMM_OFFSET (where
#   dax0.0 starts in the NVDIMM, i.e. in the host's backing file), or DAX=""
#   IVSHMEM_BDF (e.g. 0000:00:02.0) IVSHMEM_SIZE (BAR 2 bytes), or ""
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
export TMPDIR=/tmp HOME=/root
# shellcheck source=tests/vm/lib.sh
. /vm/lib.sh

ROLE="" PHASE=1 SCENARIO="" WAIT=120 FMT=""
# shellcheck disable=SC2013 # words, not lines
for kv in $(cat /proc/cmdline); do
	case $kv in
	shmfs.scenario=*) SCENARIO=${kv#*=} ;;
	shmfs.role=*) ROLE=${kv#*=} ;;
	shmfs.phase=*) PHASE=${kv#*=} ;;
	shmfs.wait=*) WAIT=${kv#*=} ;;
	shmfs.fmt=*) FMT=${kv#*=} ;;
	shmfs.v.*=*)
		kv=${kv#shmfs.v.}
		export "${kv%%=*}=${kv#*=}"
		;;
	esac
done
export ROLE PHASE SCENARIO WAIT
uptime_s() { cut -d' ' -f1 /proc/uptime; }
echo "=== guest role=$ROLE phase=$PHASE scenario=$SCENARIO kernel=$(uname -r) uptime=$(uptime_s)s"

bye() {
	echo "=== done role=$ROLE phase=$PHASE scenario=$SCENARIO uptime=$(uptime_s)s"
	sync
	poweroff -f
	sleep 10 # poweroff -f does not return; if it did, panic=-1 ends the VM
	exit 1
}

# A hung scenario must still say so before run.sh's timeout kills QEMU.
(
	sleep "$WAIT"
	echo "RESULT watchdog FAIL role $ROLE (phase $PHASE) still running after ${WAIT}s"
	# shellcheck disable=SC2009 # the whole table, for the log
	ps 2>/dev/null | grep -v ' \[' | sed 's/^/  | /'
	poweroff -f
) &

for m in nfit nd_pmem dax_pmem device_dax fuse; do
	modprobe $m 2>&1 | sed 's/^/modprobe: /' || true
done
# Namespaces are probed asynchronously once nfit is in.
if [ -d /sys/bus/nd/devices/ndbus0 ]; then
	i=0
	while [ $i -lt 50 ] && [ ! -e /dev/dax0.0 ] && [ ! -e /dev/pmem0 ]; do
		sleep 0.1
		i=$((i + 1))
	done
fi

if [ "$FMT" = 1 ]; then
	# One-time: turn the labelless NVDIMM's raw namespace into devdax.  The
	# info block lands in the shared backing file, so every later guest on a
	# copy of that header finds /dev/dax0.0 without ndctl.  --map=mem keeps
	# the struct pages in guest RAM, not in the shared region.
	[ -e /dev/dax0.0 ] ||
		ndctl create-namespace -f -e namespace0.0 --mode=devdax --map=mem 2>&1 | sed 's/^/ndctl: /'
	if [ -c /dev/dax0.0 ]; then
		pass format "size=$(cat /sys/bus/dax/devices/dax0.0/size) align=$(cat /sys/bus/dax/devices/dax0.0/align 2>/dev/null)"
	else
		fail format "no /dev/dax0.0 after ndctl: $(echo /dev/pmem* /dev/dax*)"
	fi
	bye
fi

DAX="" DAX_SIZE="" DAX_ALIGN="" DAX_NVDIMM_OFFSET=""
if [ -c /dev/dax0.0 ]; then
	DAX=/dev/dax0.0
	d=/sys/bus/dax/devices/dax0.0
	DAX_SIZE=$(cat $d/size)
	DAX_ALIGN=$(cat $d/align 2>/dev/null || echo 0)
	# Physical start of dax0.0 minus the start of the NVDIMM region: the
	# offset of /dev/dax0.0 inside the host's backing file.
	res=$(cat $d/resource 2>/dev/null)
	reg=$(cat /sys/bus/nd/devices/region0/resource 2>/dev/null)
	[ -n "$res" ] && [ -n "$reg" ] && DAX_NVDIMM_OFFSET=$((res - reg))
fi
# The shmfs daemon logs to syslog once it is in the background.
syslogd -O /tmp/messages -s 1024 2>/dev/null || true
IVSHMEM_BDF=$(find_ivshmem) || IVSHMEM_BDF=""
IVSHMEM_SIZE=""
[ -n "$IVSHMEM_BDF" ] && IVSHMEM_SIZE=$(stat -c %s "/sys/bus/pci/devices/$IVSHMEM_BDF/resource2")
export DAX DAX_SIZE DAX_ALIGN DAX_NVDIMM_OFFSET IVSHMEM_BDF IVSHMEM_SIZE
echo "=== dax=${DAX:-none} size=$DAX_SIZE align=$DAX_ALIGN nvdimm_offset=$DAX_NVDIMM_OFFSET" \
	"ivshmem=${IVSHMEM_BDF:-none} size=$IVSHMEM_SIZE uptime=$(uptime_s)s"

if [ ! -f "/scenarios/$SCENARIO.sh" ]; then
	fail scenario "no scenario '$SCENARIO' in the initramfs ($(echo /scenarios/*))"
	bye
fi
# shellcheck disable=SC1090
. "/scenarios/$SCENARIO.sh"
GUEST_FN=guest_$ROLE
[ "$PHASE" = 1 ] || GUEST_FN=guest_${ROLE}_phase$PHASE
if ! command -v "$GUEST_FN" >/dev/null 2>&1; then
	fail scenario "$SCENARIO has no $GUEST_FN"
	bye
fi
cd /tmp || bye
# In a subshell: a shell error that ends the scenario's shell (a failed
# redirection on a special builtin, say) must not end PID 1.
("$GUEST_FN")
echo "=== $GUEST_FN exited with status $?"
bye
