# shellcheck shell=sh disable=SC2034,SC3043 # GUESTS, EXPECT_*: read by run.sh; local: ash and bash have it
# Scenario "fs_crash": a machine dies in the middle of writing (its QEMU is
# killed with SIGKILL from the host), on /dev/dax0.0 and on the ivshmem BAR
# at once (both are mounted in each guest).
#
#   prepare  the host formats both with --lease-ms 1000 (the devdax one with
#            --alloc-unit 2M), so that a dead host is dead after 1 s
#   victim   guest 2 mounts both, writes files and closes them (copied in,
#            written in one go, renamed into place, appended to in several
#            opens), and reports their SHA-256 (INFO closed_<fs>, and a
#            closed.sha256 file in each filesystem); then it starts, on each,
#            a loop rewriting an 8 MiB file (4 MiB on ivshmem) and a loop
#            creating files (so that it often holds the metadata lock), and
#            says INFO crash_ready
#   kill     the host stops guest 2's QEMU (SIGSTOP), reads the lock word
#            of both filesystems, and lets it go on (SIGCONT) until it holds
#            one of the metadata locks, at most 80 times; then SIGKILL
#   survivor guest 1 mounts both, waits for the victim's load, then keeps
#            creating files, timing each, until it sees the victim's heartbeat
#            stand still; the longest stall is how long it waited for the
#            dead machine's lease.  Then it works on: it reads the victim's
#            closed files (closed.sha256), creates, renames, unlinks, writes a
#            file and lists the directory
#   host     after poweroff: fsck.shmfs -n on both (if the build has it: only
#            what a crash leaves may be reported: a stale lease, a lock held
#            by a dead host, its orphans and preallocation); then fsck.shmfs
#            -p repairs it (exit 1, or 0 if there was nothing) and fsck.shmfs
#            -n finds it clean (exit 0); shmfs-dump is consistent, with no
#            host left in the table; a host mount shows every file closed
#            before the kill with its checksum, the survivor's file, and the
#            half-written one readable
#   phase 2  both guests boot again on the repaired filesystems and mount
#            both: each checks the files closed before the kill
#            (closed.sha256), publishes a file and reads the other's back,
#            waits for the other (a barrier of marker files) and unmounts;
#            then the host's fsck.shmfs -n must find both clean (exit 0)
#
# See scenarios/share.sh for the scenario contract.

GUESTS=2
PHASES=2 # the second boot: guest_1_phase2, guest_2_phase2, host_check_phase2
FSS="dax ivshmem"
T0=60 # s, for the other machine's boot
T=20  # s, any later wait
DEATH_WAIT=60 # s, the survivor's wait for the victim's heartbeat to stop
CLOSED="c1.bin c2.txt c3.bin c4.log"

each_fs() { # PATTERN: "%" replaced by each filesystem
	for fs in $FSS; do printf '%s ' "$(echo "$1" | sed "s/%/$fs/g")"; done
}
EXPECT_1="$(each_fs "%_mount %_victim_load %_victim_dead %_survivor_stall %_victim_files %_after_crash %_umount")"
EXPECT_2="$(each_fs "%_mount %_closed_files")"
EXPECT_1_PHASE2="$(each_fs "%_remount %_closed_intact %_publish %_sees_g2 %_both_done %_umount")"
EXPECT_2_PHASE2="$(each_fs "%_remount %_closed_intact %_publish %_sees_g1 %_both_done %_umount")"
EXPECT_HOST="host_mkfs_dax host_mkfs_ivshmem kill_g2 $(each_fs "host_%_fsck host_%_repair host_%_fsck_clean
 host_%_dump host_%_remount host_%_closed_intact host_%_survivor_file host_%_half_written host_%_umount")"
EXPECT_HOST_PHASE2="$(each_fs "host_%_fsck_final")"

fs_spec() {
	if [ -n "${BIN:-}" ]; then # on the host: the backing files
		if [ "$1" = dax ]; then echo "$NVIMG,offset=$DAX_FILE_OFFSET"; else echo "$IVIMG"; fi
	elif [ "$1" = dax ]; then echo "$DAX"
	else echo "pci:$IVSHMEM_BDF"; fi
}

# ---- guest 2: the victim ------------------------------------------------------
append_lines() { # FILE: five lines, each appended in an open of its own
	local k
	for k in 1 2 3 4 5; do echo "line $k of $NONCE" >>"$1" || return 1; done
}
guest_2() {
	head -c 1048576 /dev/urandom >/tmp/c1.bin
	echo "victim $NONCE" >/tmp/c2.txt
	head -c 307200 /dev/urandom >/tmp/c3.bin
	append_lines /tmp/c4.log
	# shellcheck disable=SC2086 # the list of names
	(cd /tmp && sha256sum $CLOSED) >/tmp/closed.sha256
	for fs in $FSS; do fs_mount "${fs}_mount" "$(fs_spec "$fs")" "/mnt/$fs" g2; done
	for fs in $FSS; do
		m="/mnt/$fs"
		# Four ways to write a file, each closed before the kill.
		if cp /tmp/c1.bin "$m/c1.bin" && echo "victim $NONCE" >"$m/c2.txt" &&
			cp /tmp/c3.bin "$m/.c3.tmp" && mv "$m/.c3.tmp" "$m/c3.bin" &&
			append_lines "$m/c4.log" &&
			cp /tmp/closed.sha256 "$m/closed.sha256"; then
			pass "${fs}_closed_files" "$CLOSED written and closed"
		else
			fail "${fs}_closed_files" "writing $CLOSED into $m failed"
		fi
		info "closed_$fs" "$(tr -s ' ' ':' </tmp/closed.sha256 | tr '\n' ' ')"
		mkdir -p "$m/meta"
	done
	# The load the kill interrupts: a big file rewritten over and over, and
	# creates, on both filesystems.
	for fs in $FSS; do
		m="/mnt/$fs" count=128 # 64 KiB blocks
		[ "$fs" = ivshmem ] && count=64
		(while :; do dd if=/dev/zero of="$m/big" bs=65536 count=$count 2>/dev/null; done) &
		(i=0; while [ $i -lt 4000 ]; do true >"$m/meta/f$i"; i=$((i + 1)); done) &
	done
	sleep 1
	for fs in $FSS; do true >"/mnt/$fs/crash.ready"; done
	info crash_ready 1
	sleep $((WAIT + 10)) # the host kills this machine; else the watchdog says so
}

# ---- guest 1: the survivor ---------------------------------------------------
# heartbeat SPEC HOST: HOST's heartbeat counter in SPEC's host table, or
# "gone" when it has no slot there any more
heartbeat() {
	local h
	h=$(shmfs-dump -H "$1" 2>/dev/null | sed -n "s/.* name=\"$2\" .* heartbeat=\\([0-9]*\\) .*/\\1/p")
	echo "${h:-gone}"
}

after_crash() { # FS
	local m="/mnt/$1" i errs=0 sum
	# The victim's files, closed before it died
	if ! out=$(cat "$m/closed.sha256" 2>&1); then
		fail "$1_victim_files" "reading $m/closed.sha256, the dead guest's list: $out"
		fs_syslog
	elif out=$(cd "$m" && sha256sum -c closed.sha256 2>&1); then
		pass "$1_victim_files" "$(echo "$out" | grep -c ': OK') files the dead guest closed read back intact"
	else
		fail "$1_victim_files" "sha256sum -c closed.sha256 in $m: $(echo "$out" | grep -v ': OK' | head -n 3 | tr '\n' ' ')"
		fs_syslog
	fi
	# Work on: names and data
	mkdir "$m/after" || errs=$((errs + 1))
	make_files "$m/after" s 20
	errs=$((errs + MADE_ERRS))
	mv "$m/after/s_1" "$m/after/renamed" || errs=$((errs + 1))
	rm "$m/after/s_2" || errs=$((errs + 1))
	head -c 524288 /dev/urandom >/tmp/after.bin
	cp /tmp/after.bin "$m/after/data.bin" || errs=$((errs + 1))
	sum=$(sha256 /tmp/after.bin)
	info "after_$1" "$sum"
	# shellcheck disable=SC2012 # our own names, no blanks
	n=$(ls "$m/after" | wc -l)
	if [ $errs = 0 ] && [ "$n" = 20 ] && [ -e "$m/after/renamed" ] && [ ! -e "$m/after/s_2" ]; then
		pass "$1_after_crash" "mkdir, 20 creates, rename, unlink, a 512 KiB file: all fine; 20 names listed"
	else
		fail "$1_after_crash" "$errs operations failed; $n names in $m/after (want 20)"
		fs_syslog
	fi
}

guest_1() {
	FS_FOREGROUND=1 # keep libfuse's messages
	for fs in $FSS; do fs_mount "${fs}_mount" "$(fs_spec "$fs")" "/mnt/$fs" g1; done
	for fs in $FSS; do
		if poll $T0 exists "/mnt/$fs/crash.ready"; then
			pass "${fs}_victim_load" "guest 2 closed its files and started its load"
		else
			fail "${fs}_victim_load" "no crash.ready from guest 2 in ${T0}s"
		fi
		mkdir -p "/mnt/$fs/surv"
	done
	# Until the victim is dead on both: create files, time each, and watch
	# its heartbeat (every 0.5 s).  Dead = stood still for 2 leases.
	now_ms
	start=$NOW_MS next=$NOW_MS i=0
	for fs in $FSS; do eval "hb_$fs=x since_$fs=$NOW_MS dead_$fs= max_$fs=0 errs_$fs=0 n_$fs=0"; done
	while :; do
		i=$((i + 1))
		for fs in $FSS; do
			eval "[ -n \"\$dead_$fs\" ]" && continue
			now_ms
			t0=$NOW_MS
			true >"/mnt/$fs/surv/s$i" 2>/dev/null || eval "errs_$fs=\$((errs_$fs + 1))"
			now_ms
			eval "n_$fs=\$((n_$fs + 1)); [ $((NOW_MS - t0)) -gt \$max_$fs ] && max_$fs=$((NOW_MS - t0))"
		done
		[ "$NOW_MS" -lt "$next" ] && continue
		next=$((NOW_MS + 500))
		alive=0
		for fs in $FSS; do
			eval "[ -n \"\$dead_$fs\" ]" && continue
			h=$(heartbeat "$(fs_spec "$fs")" g2)
			now_ms
			if [ "$h" = gone ]; then
				eval "dead_$fs=\"its slot is gone\""
			elif eval "[ \"\$hb_$fs\" != \"$h\" ]"; then
				eval "hb_$fs=$h since_$fs=$NOW_MS"
				alive=1
			elif eval "[ $NOW_MS -ge \$((since_$fs + 2000)) ]"; then
				eval "dead_$fs=\"heartbeat stood at $h for \$((NOW_MS - since_$fs)) ms\""
			else
				alive=1
			fi
		done
		[ $alive = 0 ] && break
		[ $((NOW_MS - start)) -ge $((DEATH_WAIT * 1000)) ] && break
	done
	for fs in $FSS; do
		dead="" max=0 errs=0 n=0
		eval "dead=\$dead_$fs max=\$max_$fs errs=\$errs_$fs n=\$n_$fs"
		if [ -n "$dead" ]; then
			pass "${fs}_victim_dead" "guest 2's $dead"
		else
			fail "${fs}_victim_dead" "guest 2's heartbeat still moves after ${DEATH_WAIT}s (was it killed?)"
		fi
		if [ "$errs" = 0 ] && [ "$max" -lt 10000 ]; then
			pass "${fs}_survivor_stall" "$n creates meanwhile, none failed; the longest took $max ms (lease 1000 ms)"
		else
			fail "${fs}_survivor_stall" "$errs of $n creates failed; the longest took $max ms (lease 1000 ms)"
			fs_syslog
		fi
	done
	for fs in $FSS; do after_crash "$fs"; done
	for fs in $FSS; do fs_umount "${fs}_umount" "/mnt/$fs" "$(fs_spec "$fs")" g1; done
	fs_syslog
}

# ---- the host ----------------------------------------------------------------
host_prepare() {
	expect_ok host_mkfs_dax "$BIN/mkfs.shmfs" -f -q --alloc-unit 2M --lease-ms 1000 -L "$LABEL-dax" \
		-U "$UUID_A" "$(fs_spec dax)"
	expect_ok host_mkfs_ivshmem "$BIN/mkfs.shmfs" -f -q --lease-ms 1000 -L "$LABEL-ivs" -U "$UUID_B" \
		"$(fs_spec ivshmem)"
}

# lock_holder SPEC: the name of the host holding SPEC's metadata lock, or
# "none"
lock_holder() {
	local out s n
	out=$("$BIN/shmfs-dump" --records 1 "$1" 2>&1)
	s=$(echo "$out" | sed -n 's/^ *lock_owner_slot  *\([0-9][0-9]*\)$/\1/p')
	if [ -z "$s" ]; then
		echo "$out" | grep -q '^ *lock_owner_slot  *none' && echo none || echo "unknown"
		return
	fi
	n=$(echo "$out" | sed -n "s/^ *slot=$s state=[a-z]* name=\"\([^\"]*\)\".*/\1/p")
	echo "${n:-slot $s}"
}

host_during() {
	local tries=0 held="" fs
	if ! ginfo_wait 2 crash_ready $((T0 + 30)) >/dev/null; then
		fail kill_g2 "guest 2 never said crash_ready; nothing killed"
		return 1
	fi
	sleep 1
	# Stop it, look at the lock words, go on, until it holds one.
	while [ $tries -lt 80 ]; do
		tries=$((tries + 1))
		signal_guest 2 STOP || break
		held=""
		for fs in $FSS; do
			[ "$(lock_holder "$(fs_spec "$fs")")" = g2 ] && held="$held $fs"
		done
		[ -n "$held" ] && break
		signal_guest 2 CONT
		# shellcheck disable=SC3028 # host side: bash
		sleep "0.0$((RANDOM % 9 + 1))"
	done
	if ! signal_guest 2 KILL; then
		fail kill_g2 "guest 2's QEMU is not running any more"
		return 1
	fi
	poll 10 exists "g2.rc"
	if [ -n "$held" ]; then
		pass kill_g2 "SIGKILL while guest 2 held the metadata lock of:$held (look $tries, with its QEMU stopped)"
	else
		pass kill_g2 "SIGKILL; guest 2 held no metadata lock in $tries looks (the survivor only waits out its lease)"
	fi
	for fs in $FSS; do
		info "after_kill_$fs" "lock held by $(lock_holder "$(fs_spec "$fs")")"
	done
}

# crash_leftovers FILE: the problem lines (they end in [CODE]) of fsck.shmfs
# output FILE that a crash does not explain.  Left by a crash: a stale
# lease, a lock held by a dead host, orphans of a dead host, leaked
# preallocation.
crash_leftovers() {
	grep -E '\[[a-z_]+\]$' "$1" | grep -vE '\[(hs_heartbeat|ctl_lock|ex_foff)\]$' |
		grep -vE 'orphan \(open on host slot .*\[rl_ino\]$'
}
# problem_codes FILE: "N CODE ..." for the problem lines of FILE
problem_codes() {
	grep -E '^[^ ].*\[[a-z_]+\]$' "$1" | grep -v '^after repair: ' | sed 's/.*\[\(.*\)\]$/\1/' |
		sort | uniq -c | tr -s ' \n' '  '
}

# fsck_check NAME SPEC: fsck.shmfs -n; only what a crash leaves is allowed
fsck_check() {
	local out rc bad
	if [ ! -x "$BIN/fsck.shmfs" ]; then
		skip "$1" "no fsck.shmfs in $BIN"
		return 0
	fi
	out=$("$BIN/fsck.shmfs" -n "$2" 2>&1)
	rc=$?
	echo "$out" >"$1.out"
	bad=$(crash_leftovers "$1.out")
	if [ $rc = 0 ]; then
		pass "$1" "clean: $(tail -n 1 "$1.out")"
	elif [ $rc = 4 ] && [ -z "$bad" ]; then
		pass "$1" "exit 4, only what a crash leaves: $(grep -cE '\[[a-z_]+\]$' "$1.out") problem(s):" \
			"$(problem_codes "$1.out")"
	else
		fail "$1" "exit $rc: $(echo "${bad:-$out}" | head -n 3 | tr '\n' ' ')"
		show "$1.out"
	fi
}

# fsck_repair NAME SPEC: fsck.shmfs -p (what fsck at boot would do): it
# must find only what a crash leaves and repair all of it: exit 1, or 0
# when it found nothing.  The repairs go into the log as INFO NAME.
fsck_repair() {
	local rc bad n did
	if [ ! -x "$BIN/fsck.shmfs" ]; then
		skip "$1" "no fsck.shmfs in $BIN"
		return 0
	fi
	"$BIN/fsck.shmfs" -p "$2" >"$1.out" 2>&1 </dev/null
	rc=$?
	sed 's/^/  | /' "$1.out"
	bad=$(crash_leftovers "$1.out")
	n=$(grep -E '^[^ ].*\[[a-z_]+\]$' "$1.out" | grep -vc '^after repair: ')
	# what it did: "  host slot 1 [hs_heartbeat]: slot freed"
	did=$(grep -E '^  .*\[[a-z_]+\]: ' "$1.out" | sed 's/^ *//' | tr '\n' ';')
	info "$1" "$did"
	if [ -n "$bad" ]; then
		fail "$1" "exit $rc; not what a crash leaves: $(echo "$bad" | head -n 3 | tr '\n' ' ')"
		show "$1.out"
	elif [ $rc = 1 ] && [ "$n" -gt 0 ] && ! grep -q '^after repair: ' "$1.out"; then
		pass "$1" "exit 1, $n problem(s) found and repaired:$(problem_codes "$1.out")-> ${did%;}"
	elif [ $rc = 0 ] && [ "$n" = 0 ]; then
		pass "$1" "exit 0, nothing to repair: $(tail -n 1 "$1.out" | sed 's/^[^:]*: //')"
	else
		fail "$1" "exit $rc with $n problem(s) (want exit 1, every one repaired; or 0 and none):" \
			"$(grep -E '^after repair: |not repaired' "$1.out" | head -n 3 | tr '\n' ' ')"
		show "$1.out"
	fi
}

# fsck_clean NAME SPEC: fsck.shmfs -n finds nothing: exit 0
fsck_clean() {
	local rc
	if [ ! -x "$BIN/fsck.shmfs" ]; then
		skip "$1" "no fsck.shmfs in $BIN"
		return 0
	fi
	"$BIN/fsck.shmfs" -n "$2" >"$1.out" 2>&1
	rc=$?
	if [ $rc = 0 ]; then
		pass "$1" "exit 0: $(tail -n 1 "$1.out" | sed 's/^[^:]*: //')"
	else
		fail "$1" "exit $rc: $(grep -E '\[[a-z_]+\]$' "$1.out" | head -n 3 | tr '\n' ' ')"
		show "$1.out"
	fi
}

host_check() {
	for fs in $FSS; do
		spec=$(fs_spec "$fs")
		m=$PWD/mnt-$fs
		# What the crash left, then the repair, then nothing left.
		fsck_check "host_${fs}_fsck" "$spec"
		fsck_repair "host_${fs}_repair" "$spec"
		fsck_clean "host_${fs}_fsck_clean" "$spec"
		"$BIN/shmfs-dump" --json "$spec" >"$fs.json" 2>"$fs.json.err"
		if [ -x "$BIN/fsck.shmfs" ]; then # repaired: the dead host's slot is free
			expect_json "host_${fs}_dump" "$fs.json" .consistent=true '.errors|length'=0 '.hosts|length'=0
		else
			expect_json "host_${fs}_dump" "$fs.json" .consistent=true '.errors|length'=0
		fi
		info "${fs}_after_repair" "$(jq -r '"\(.log.records) records, \(.log.seals) seal(s), hosts in the table: \([.hosts[] | "\(.name) (\(.state))"] | join(", "))"' "$fs.json")"
		fs_mount "host_${fs}_remount" "$spec" "$m" host || continue
		# every file guest 2 closed before it was killed
		bad="" n=0
		for cs in $(ginfo 2 "closed_$fs"); do
			n=$((n + 1))
			[ "$(sha256 "$m/${cs#*:}")" = "${cs%%:*}" ] || bad="$bad ${cs#*:}"
		done
		if [ $n = 4 ] && [ -z "$bad" ]; then
			pass "host_${fs}_closed_intact" "all $n files closed before the kill: same SHA-256"
		else
			fail "host_${fs}_closed_intact" "$n checksums from guest 2 (want 4); wrong:$bad"
		fi
		want=$(ginfo 1 "after_$fs")
		got=$(sha256 "$m/after/data.bin")
		if [ -n "$want" ] && [ "$got" = "$want" ]; then
			pass "host_${fs}_survivor_file" "after/data.bin, written after the crash: same SHA-256"
		else
			fail "host_${fs}_survivor_file" "after/data.bin: sha256 $got, guest 1 wrote '$want'"
		fi
		# the file being written at the kill: any size, but readable
		if [ -f "$m/big" ] && out=$(cat "$m/big" 2>&1 >/dev/null) && [ -z "$out" ]; then
			pass "host_${fs}_half_written" "big: $(stat -c %s "$m/big") bytes, readable"
		else
			fail "host_${fs}_half_written" "big: $(ls -l "$m/big" 2>&1) $out"
		fi
		fs_umount "host_${fs}_umount" "$m" "$spec" host
		# For the report: what this host's mount left (nothing, after the
		# repair).
		[ -x "$BIN/fsck.shmfs" ] && info "${fs}_fsck_after_host_mount" \
			"$("$BIN/fsck.shmfs" -n "$spec" 2>&1 | sed -n 's/.*\[\([a-z_]*\)\]$/\1/p' | sort | uniq -c | tr -s ' \n' '  ')"
	done
}

# ---- phase 2: both guests again, on the repaired filesystems ------------------
phase2() { # ME OTHER
	local me="$1" other="$2" fs m out w
	FS_FOREGROUND=1 # keep libfuse's messages
	head -c 262144 /dev/urandom >/tmp/p2.bin
	for fs in $FSS; do fs_mount "${fs}_remount" "$(fs_spec "$fs")" "/mnt/$fs" "$me"; done
	for fs in $FSS; do
		m=/mnt/$fs
		# every file guest 2 closed before it was killed, by its own list
		if out=$(cd "$m" && sha256sum -c closed.sha256 2>&1); then
			pass "${fs}_closed_intact" "$(echo "$out" | grep -c ': OK') files closed before the kill read back intact"
		else
			fail "${fs}_closed_intact" "sha256sum -c closed.sha256 in $m: $(echo "$out" | grep -v ': OK' | head -n 3 | tr '\n' ' ')"
			fs_syslog
		fi
		publish "${fs}_publish" /tmp/p2.bin "$m" "p2_$me.bin"
	done
	w=$T0 # the other machine may still be booting; once it failed to show
	for fs in $FSS; do # up, wait no more than 5 s (the watchdog is 90 s)
		m=/mnt/$fs
		verify_published "${fs}_sees_$other" "$m" "p2_$other.bin" $w || w=5
		# Both have read the other's file before either unmounts.
		if barrier "$m" p2_done "$me" $((w < T ? w : T)) "$other"; then
			pass "${fs}_both_done" "$other is done too (${POLL_MS:-?} ms)"
		else
			fail "${fs}_both_done" "no p2_done.$other after $((w < T ? w : T))s"
			w=5
		fi
	done
	for fs in $FSS; do fs_umount "${fs}_umount" "/mnt/$fs" "$(fs_spec "$fs")" "$me"; done
	fs_syslog
}
guest_1_phase2() { phase2 g1 g2; }
guest_2_phase2() { phase2 g2 g1; }

# After both guests' second mount and umount: nothing left to repair.
host_check_phase2() {
	for fs in $FSS; do fsck_clean "host_${fs}_fsck_final" "$(fs_spec "$fs")"; done
}
