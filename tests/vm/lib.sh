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
