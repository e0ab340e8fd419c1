# shellcheck shell=sh disable=SC3043 # local: busybox ash and bash have it
# tests/vm/lib.sh: helpers for scenario scripts, sourced both in the guests
# (busybox ash, as /vm/lib.sh) and on the host (bash).  POSIX sh only.
#
# Every check ends in exactly one line
#     RESULT <name> PASS|FAIL <detail>
# on stdout (the guest's ttyS0, or the host check log); run.sh collects them.
# On FAIL the output of the command that failed follows, indented with "  | ".

# shmfs_bin NAME: the project program NAME ($BIN/NAME on the host, from PATH in
# the guest).  Every helper keeps its variables local (ash and bash
# both have local).
shmfs_bin() { if [ -n "${BIN:-}" ]; then echo "$BIN/$1"; else echo "$1"; fi; }

result() { # NAME PASS|FAIL DETAIL...
	local _n="$1" _s="$2"
	shift 2
	echo "RESULT $_n $_s $*"
}
pass() { local _n="$1"; shift; result "$_n" PASS "$@"; }
skip() { local _n="$1"; shift; result "$_n" SKIP "$@"; } # counts as neither
fail() { local _n="$1"; shift; result "$_n" FAIL "$@"; }

# info KEY VALUE: a fact for the host (run.sh: ginfo ROLE KEY).
info() { echo "INFO $1=$2"; }

# Show a file's content under a FAIL line (at most 30 lines), unless it is
# just the one line the FAIL detail already quotes.
show() {
	[ "$(grep -vc '^$' "$1" 2>/dev/null)" -gt 1 ] && head -n 30 "$1" | sed 's/^/  | /'
	return 0
}

_tmp() { echo "${TMPDIR:-/tmp}/vmlib.$$.$1"; }

# expect_ok NAME CMD...: PASS when CMD exits 0.
expect_ok() {
	local _n="$1" _o _rc
	shift
	_o=$(_tmp out)
	"$@" >"$_o" 2>&1
	_rc=$?
	if [ $_rc = 0 ]; then
		pass "$_n" "$(basename "$1") ok"
		rm -f "$_o"
		return 0
	fi
	fail "$_n" "exit $_rc: $* :: $(grep -v '^$' "$_o" | tail -n 1)"
	show "$_o"
	rm -f "$_o"
	return 1
}

# expect_refused NAME REGEX CMD...: PASS when CMD exits non-zero and its
# output (stdout+stderr) matches the extended REGEX.
expect_refused() {
	local _n="$1" _re="$2" _o _rc _msg
	shift 2
	_o=$(_tmp out)
	"$@" >"$_o" 2>&1
	_rc=$?
	_msg=$(grep -v '^$' "$_o" | tail -n 1)
	if [ $_rc = 0 ]; then
		fail "$_n" "expected a refusal, but exit 0: $*"
		show "$_o"
	elif ! grep -Eq "$_re" "$_o"; then
		fail "$_n" "exit $_rc but the message does not match /$_re/: $_msg"
		show "$_o"
	else
		pass "$_n" "exit $_rc: $(grep -E "$_re" "$_o" | head -n 1)"
		rm -f "$_o"
		return 0
	fi
	rm -f "$_o"
	return 1
}

# expect_match NAME REGEX CMD...: PASS when CMD exits 0 and its output
# (stdout+stderr) has a line matching the extended REGEX.
expect_match() {
	local _n="$1" _re="$2" _o _rc
	shift 2
	_o=$(_tmp out)
	"$@" >"$_o" 2>&1
	_rc=$?
	if [ $_rc = 0 ] && grep -Eq "$_re" "$_o"; then
		pass "$_n" "$(grep -E "$_re" "$_o" | head -n 1 | sed 's/^ *//')"
		rm -f "$_o"
		return 0
	fi
	if [ $_rc != 0 ]; then
		fail "$_n" "exit $_rc: $* :: $(grep -v '^$' "$_o" | tail -n 1)"
	else
		fail "$_n" "no line matches /$_re/ in the output of: $*"
	fi
	show "$_o"
	rm -f "$_o"
	return 1
}

# dump_json FILE SPEC: shmfs-dump --json --super-only SPEC > FILE; returns
# its exit status.
dump_json() { "$(shmfs_bin shmfs-dump)" --json --super-only "$2" >"$1" 2>"$1.err"; }

# jfields FILE PATH...: print one line per jq PATH (".superblock.uuid"),
# "null" for a missing one.  One jq process for all of them.
jfields() {
	local _f="$1" _q="" _p
	shift
	for _p in "$@"; do _q="$_q${_q:+,}($_p|tostring)"; done
	jq -r "$_q" "$_f" 2>/dev/null
}

# expect_json NAME FILE PATH=VALUE...: PASS when every jq PATH (as a
# string) equals VALUE; the FAIL detail lists each mismatch with the value
# that was there.
expect_json() {
	local _n="$1" _f="$2" _paths="" _bad="" _i=0 _kv _got
	shift 2
	for _kv in "$@"; do _paths="$_paths ${_kv%%=*}"; done
	# One jq for all fields: jq costs ~0.5 s per run in a TCG guest.
	# shellcheck disable=SC2086 # the paths contain no blanks
	if ! jfields "$_f" $_paths >"$_f.vals"; then
		fail "$_n" "not JSON: $(head -c 200 "$_f" | tr '\n' ' ')"
		show "$_f.err"
		rm -f "$_f.vals"
		return 1
	fi
	for _kv in "$@"; do
		_i=$((_i + 1))
		_got=$(sed -n "${_i}p" "$_f.vals")
		[ "$_got" = "${_kv#*=}" ] || _bad="$_bad ${_kv%%=*}=$_got(want ${_kv#*=})"
	done
	rm -f "$_f.vals"
	if [ -z "$_bad" ]; then
		pass "$_n" "$# fields match"
		return 0
	fi
	fail "$_n" "mismatch:$_bad"
	return 1
}

# wait_uuid SPEC UUID SECONDS FILE: poll shmfs-dump (every 0.2 s) until the
# primary superblock of SPEC carries UUID, then dump once more into FILE (so FILE
# is a snapshot taken after the writer finished).  Returns 1 on timeout
# with the last dump in FILE.
wait_uuid() {
	local _spec="$1" _uuid="$2" _secs="$3" _f="$4" _end
	_end=$(($(date +%s) + _secs))
	WAITED_POLLS=0
	while :; do
		WAITED_POLLS=$((WAITED_POLLS + 1))
		dump_json "$_f" "$_spec"
		# grep, not jq: jq costs ~0.5 s per run in a TCG guest
		if tr -d ' \n' <"$_f" | grep -q "\"copy\":\"primary\".*\"uuid\":\"$_uuid\""; then
			sleep 0.2
			dump_json "$_f" "$_spec"
			return 0
		fi
		[ "$(date +%s)" -ge $_end ] && return 1
		sleep 0.2
	done
}

# Which PCI device is ivshmem (vendor 0x1af4, device 0x1110): prints the
# BDF ("0000:00:02.0") of the first one.  The slot depends on the other
# devices, so never hard-code it.
find_ivshmem() {
	local _d
	for _d in "${SYSFS:-/sys}"/bus/pci/devices/*; do
		[ "$(cat "$_d/vendor" 2>/dev/null)" = 0x1af4 ] &&
			[ "$(cat "$_d/device" 2>/dev/null)" = 0x1110 ] &&
			{ basename "$_d"; return 0; }
	done
	return 1
}

# ---- filesystem scenarios (fs_*): mounts, clocks, polling -----------------

# now_ms: set NOW_MS to the uptime in milliseconds (10 ms resolution).
# Builtins only: no fork, no exec (an exec costs ~40 ms under TCG).
now_ms() {
	local _u _r
	read -r _u _r </proc/uptime
	NOW_MS=$((${_u%.*} * 1000 + (1${_u#*.} - 100) * 10))
}

# poll SECONDS CMD...: run CMD every POLL_SLEEP seconds (0.02) until it
# succeeds; POLL_MS is how long that took (ms).  Returns 1 on timeout.
poll() {
	local _lim=$(($1 * 1000)) _t0
	shift
	now_ms
	_t0=$NOW_MS
	while ! "$@"; do
		now_ms
		if [ $((NOW_MS - _t0)) -ge $_lim ]; then
			POLL_MS=$((NOW_MS - _t0))
			return 1
		fi
		sleep "${POLL_SLEEP:-0.02}"
	done
	now_ms
	POLL_MS=$((NOW_MS - _t0))
}
exists() { [ -e "$1" ]; }
absent() { [ ! -e "$1" ] && [ ! -L "$1" ]; }
is_dir() { [ -d "$1" ]; }
# has_line FILE LINE: FILE's first line is LINE
has_line() { local _l=""; [ -e "$1" ] && read -r _l <"$1" 2>/dev/null; [ "$_l" = "$2" ]; }

# sha256 FILE: its SHA-256 in hex, or "unreadable"
sha256() {
	local _s
	_s=$(sha256sum "$1" 2>/dev/null) || { echo unreadable; return 1; }
	echo "${_s%% *}"
}

# fs_mount NAME SPEC MNT HOST [OPTS]: mount shmfs (SPEC at MNT,
# -o host=HOST[,OPTS]); RESULT NAME.  The daemon's pid goes to MNT.dpid.
# In a guest the daemon forks into the background, as users run it, and
# logs to syslog (guest-init runs syslogd into /tmp/messages).  On the host
# (BIN set), or with FS_FOREGROUND=1, it runs with -f in the background of
# the calling shell instead, its messages (libfuse's too) in MNT.log: the
# host may have no syslog, and libfuse's own complaints never reach syslog.
fs_mount() {
	local _n="$1" _spec="$2" _mnt="$3" _h="$4${5:+,$5}" _o _i=0 _pid="" _t
	_o=$(_tmp mount)
	mkdir -p "$_mnt"
	if [ -n "${BIN:-}" ] || [ "${FS_FOREGROUND:-0}" = 1 ]; then
		"$(shmfs_bin shmfs)" -f "$_spec" "$_mnt" -o "host=$_h" >"$_mnt.log" 2>&1 &
		_pid=$!
		while [ $_i -lt 200 ] && ! grep -q " $_mnt fuse" /proc/mounts && kill -0 $_pid 2>/dev/null; do
			sleep 0.05
			_i=$((_i + 1))
		done
		cp "$_mnt.log" "$_o"
	else
		shmfs "$_spec" "$_mnt" -o "host=$_h" >"$_o" 2>&1
		# shellcheck disable=SC2009 # busybox has no pgrep
		_pid=$(ps -o pid,args | awk -v m="$_mnt" '$2 ~ /shmfs$/ && $4 == m { print $1 }')
	fi
	echo "$_pid" >"$_mnt.dpid"
	[ -f "$_mnt.log" ] && FS_LOGS="${FS_LOGS:-} $_mnt.log"
	if grep -q " $_mnt fuse" /proc/mounts && ls "$_mnt" >/dev/null 2>>"$_o"; then
		# Served, so the daemon has joined: its name is in the host table
		# (read-only mounts do not join).
		_t="read-only, not in the host table"
		if [ "${5:-}" != ro ] && ! _t=$(in_host_table "$_spec" "$4"); then
			fail "$_n" "mounted, but host $4 is not in the host table of $_spec: $_t"
			rm -f "$_o"
			return 1
		fi
		pass "$_n" "$_spec on $_mnt as host $_h (daemon pid $_pid, $_t)"
		rm -f "$_o"
		return 0
	fi
	fail "$_n" "shmfs $_spec $_mnt -o host=$_h: not mounted :: $(grep -v '^$' "$_o" | tail -n 1)"
	show "$_o"
	fs_syslog
	rm -f "$_o"
	return 1
}

# in_host_table SPEC HOST: HOST has an active slot in SPEC's host table;
# prints "slot N", or what the table holds instead.
in_host_table() {
	local _t _s
	_t=$("$(shmfs_bin shmfs-dump)" -H "$1" 2>&1)
	_s=$(echo "$_t" | sed -n "s/^ *slot=\([0-9]*\) state=active name=\"$2\" .*/\1/p")
	if [ -n "$_s" ]; then
		echo "slot $_s"
		return 0
	fi
	echo "$_t" | sed -n 's/^ *slot=\([0-9]*\) state=\([a-z]*\) name=\("[^"]*"\).*/slot \1: \3 \2;/p' | tr '\n' ' '
	return 1
}

# fs_umount NAME MNT [SPEC HOST]: umount MNT and wait until its daemon has
# exited; with SPEC and HOST, also check that it left SPEC's host table on
# the way out; RESULT NAME.  A daemon that
# outlives the umount by 5 s is a failure, unless another mount namespace
# still holds the mount (then the kernel keeps the connection, which
# happens on a busy host: the daemon then gets SIGTERM, and the detail says
# so).
fs_umount() {
	local _n="$1" _mnt="$2" _spec="${3:-}" _h="${4:-}" _o _pid="" _ns _why=""
	[ -f "$_mnt.dpid" ] && read -r _pid <"$_mnt.dpid"
	if ! grep -q " $_mnt fuse" /proc/mounts; then
		fail "$_n" "$_mnt is not mounted (any more)"
		fs_syslog
		return 1
	fi
	if [ -n "$_pid" ] && pid_gone "$_pid"; then
		fail "$_n" "the daemon of $_mnt (pid $_pid) died before the umount"
		umount "$_mnt" 2>/dev/null
		fs_syslog
		return 1
	fi
	# Still in the table?  (Two hosts that claim one slot at once both
	# think they own it; only one name stays.)
	if [ -n "$_h" ] && ! _o=$(in_host_table "$_spec" "$_h"); then
		fail "$_n" "host $_h is no longer in the host table of $_spec, though still mounted: $_o"
		umount "$_mnt" 2>/dev/null
		fs_syslog
		return 1
	fi
	_o=$(_tmp umount)
	if ! umount "$_mnt" >"$_o" 2>&1; then
		fail "$_n" "umount $_mnt :: $(grep -v '^$' "$_o" | tail -n 1)"
		show "$_o"
		rm -f "$_o"
		return 1
	fi
	rm -f "$_o"
	if [ -z "$_pid" ] || poll 5 pid_gone "$_pid"; then
		_why="daemon gone after ${POLL_MS:-?} ms"
	else
		_ns=$(grep -l " $_mnt " /proc/[0-9]*/mountinfo 2>/dev/null | head -n 1)
		kill -TERM "$_pid" 2>/dev/null
		if [ -z "$_ns" ] || ! poll 5 pid_gone "$_pid"; then
			fail "$_n" "daemon $_pid still running 5 s after umount $_mnt${_ns:+ (mount still in ${_ns%/mountinfo})}"
			fs_syslog
			return 1
		fi
		_why="the mount lives on in another mount namespace (${_ns%/mountinfo}), so the daemon needed SIGTERM"
	fi
	if [ -n "$_h" ] && "$(shmfs_bin shmfs-dump)" -H "$_spec" 2>&1 | grep -q "state=active name=\"$_h\""; then
		fail "$_n" "$_mnt: the daemon exited ($_why) but host $_h is still in the host table of $_spec"
		fs_syslog
		return 1
	fi
	pass "$_n" "$_mnt; $_why${_h:+, host $_h left the table}"
}
# pid_gone PID: PID has exited (a zombie counts as gone)
pid_gone() {
	local _s
	kill -0 "$1" 2>/dev/null || return 0
	read -r _s <"/proc/$1/stat" 2>/dev/null || return 0
	_s=${_s##*) }
	[ "${_s%% *}" = Z ]
}

# fs_syslog: the daemon's messages so far (a guest's syslog), indented.
fs_syslog() {
	local _l
	[ -s /tmp/messages ] && grep -i 'shmfs' /tmp/messages | tail -n 20 | sed 's/^/  | syslog: /'
	for _l in ${FS_LOGS:-}; do
		[ -s "$_l" ] && sort "$_l" | uniq -c | sort -rn | head -n 5 | sed "s#^#  | $_l: #"
	done
	[ -z "${BIN:-}" ] && dmesg | grep -iE 'segfault|general protection|traps:' | tail -n 5 | sed 's/^/  | dmesg: /'
	return 0
}

# barrier DIR NAME ME SECONDS OTHER...: leave DIR/NAME.ME, wait for
# DIR/NAME.OTHER of every OTHER (each machine's marker, in the shared
# filesystem).  BARRIER_MISSING: who never came.
barrier() {
	local _d="$1" _b="$2" _s="$4" _o
	true >"$_d/$_b.$3" || { BARRIER_MISSING="(cannot create $_d/$_b.$3)"; return 1; }
	shift 4
	BARRIER_MISSING=""
	for _o in "$@"; do
		poll "$_s" exists "$_d/$_b.$_o" || BARRIER_MISSING="$BARRIER_MISSING $_o"
	done
	[ -z "$BARRIER_MISSING" ]
}

# publish NAME SRC MNT BASE: copy SRC to MNT/BASE and close it, then put its
# SHA-256 in MNT/BASE.sha256 (renamed into place: whoever sees that file
# sees it whole, after the data was closed); RESULT NAME.
publish() {
	local _n="$1" _src="$2" _m="$3" _b="$4" _sum
	_sum=$(sha256 "$_src")
	if cp "$_src" "$_m/$_b" && echo "$_sum" >"$_m/.$_b.sha256" && mv "$_m/.$_b.sha256" "$_m/$_b.sha256"; then
		pass "$_n" "$_b: $(wc -c <"$_src") bytes, sha256 $_sum"
		return 0
	fi
	fail "$_n" "cp $_src $_m/$_b or publishing its checksum failed"
	return 1
}

# verify_published NAME MNT BASE SECONDS: wait for MNT/BASE.sha256 (from
# publish, on another machine), then read MNT/BASE: the same SHA-256 (on
# close-to-open); RESULT NAME.
verify_published() {
	local _n="$1" _m="$2" _b="$3" _want _got _waited
	if ! poll "$4" exists "$_m/$_b.sha256"; then
		fail "$_n" "no $_m/$_b.sha256 after ${4}s"
		return 1
	fi
	_waited=$POLL_MS
	_want=$(cat "$_m/$_b.sha256" 2>&1)
	_got=$(sha256 "$_m/$_b")
	if [ "$_got" = "$_want" ]; then
		pass "$_n" "$_b: $(stat -c %s "$_m/$_b") bytes, sha256 $_got as written (published after ${_waited} ms here)"
		return 0
	fi
	fail "$_n" "$_b: size $(stat -c %s "$_m/$_b"), sha256 $_got; its writer's checksum: '$_want';" \
		"reading it: $(dd if="$_m/$_b" of=/dev/null bs=64k 2>&1 | grep -iv records | head -n 1)"
	fs_syslog
	return 1
}

# make_files DIR PREFIX N [DATA]: create DIR/PREFIX_1 .. DIR/PREFIX_N with
# builtins only (an exec costs ~40 ms under TCG); with DATA=1 each holds
# the line "PREFIX i", else it is empty.  MADE_MS: how long it took;
# MADE_ERRS: how many failed.  MAKE_PACE=S sleeps S seconds after each (a
# fast host spreads its creates over the guests' slower ones).
make_files() {
	local _i=1 _t0
	now_ms
	_t0=$NOW_MS
	MADE_ERRS=0
	while [ $_i -le "$3" ]; do
		if [ "${4:-0}" = 1 ]; then
			echo "$2 $_i" >"$1/$2_$_i" || MADE_ERRS=$((MADE_ERRS + 1))
		else
			true >"$1/$2_$_i" || MADE_ERRS=$((MADE_ERRS + 1))
		fi
		[ -n "${MAKE_PACE:-}" ] && sleep "$MAKE_PACE"
		_i=$((_i + 1))
	done 2>/dev/null
	now_ms
	# shellcheck disable=SC2034 # for the scenario
	MADE_MS=$((NOW_MS - _t0))
}

# want_files FILE N PREFIX...: the sorted names make_files makes for each
# PREFIX
want_files() {
	local _f="$1" _n="$2" _p _i
	shift 2
	for _p in "$@"; do
		_i=1
		while [ $_i -le "$_n" ]; do
			echo "${_p}_$_i"
			_i=$((_i + 1))
		done
	done | LC_ALL=C sort >"$_f"
}

# check_names NAME DIR WANT DETAIL: DIR lists exactly the names in the
# sorted file WANT; RESULT NAME (DETAIL goes into the PASS line).
check_names() {
	local _n="$1" _d="$2" _w="$3" _g
	_g=$(_tmp names)
	# shellcheck disable=SC2012 # our own names, without blanks
	ls "$_d" 2>"$_g.err" | LC_ALL=C sort >"$_g"
	if cmp -s "$_w" "$_g"; then
		pass "$_n" "$(wc -l <"$_w") names exactly; $4"
		rm -f "$_g" "$_g.err"
		return 0
	fi
	fail "$_n" "$(wc -l <"$_g") names listed in $_d, want $(wc -l <"$_w");" \
		"missing: $(grep -vxF -f "$_g" "$_w" | head -n 5 | tr '\n' ' ')" \
		"extra: $(grep -vxF -f "$_w" "$_g" | head -n 5 | tr '\n' ' ') $(head -n 1 "$_g.err")"
	rm -f "$_g" "$_g.err"
	return 1
}

# check_contents NAME DIR WANT: each file DIR/PREFIX_i named in WANT holds
# the line "PREFIX i" (make_files ... 1); RESULT NAME.
check_contents() {
	local _n="$1" _d="$2" _f _l _bad=0 _first="" _all=0
	while read -r _f; do
		_all=$((_all + 1))
		_l=""
		read -r _l <"$_d/$_f" 2>/dev/null
		if [ "$_l" != "${_f%_*} ${_f##*_}" ]; then
			_bad=$((_bad + 1))
			# shellcheck disable=SC2002 # cat: its error message
			[ -n "$_first" ] || _first="$_f: '$_l' ($(cat "$_d/$_f" 2>&1 | head -n 1))"
		fi
	done <"$3"
	if [ $_bad = 0 ]; then
		pass "$_n" "all $_all files hold what their maker wrote"
		return 0
	fi
	fail "$_n" "$_bad of $_all files do not read back what their maker wrote; first: $_first"
	fs_syslog
	return 1
}
