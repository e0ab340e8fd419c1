# shellcheck shell=sh disable=SC2034,SC3043,SC2002,SC2012
# (GUESTS, EXPECT_*: read by run.sh; local: ash and bash have it; cat and ls
# in FAIL details: for their error messages)
# Scenario "fs_share": two machines mount one shmfs and use it, on
# /dev/dax0.0 and on the ivshmem BAR; each guest mounts both at once
# (/mnt/dax, /mnt/ivshmem), and every step runs on one, then the other.
#
#   format   guest 1: mkfs.shmfs on both, mounts them (-o host=g1);
#            guest 2 waits for the UUIDs, mounts them (-o host=g2)
#   data     guest 1 copies 4 MiB of random data in, closes it, then
#            publishes its SHA-256 in data.sha256 (renamed into place);
#            guest 2 waits for data.sha256, opens the data: same checksum
#            (close-to-open across machines)
#   names    guest 2 makes a directory, creates and writes a file in it,
#            renames it, unlinks it, removes the directory, one at a time;
#            guest 1 polls for each change (negative lookups included) and
#            acknowledges it with a file of its own.  Guest 2 reports the
#            round trip (its change -> seen on g1 -> g1's ack seen on g2),
#            so one-way visibility is at most half of that.
#   concurrent  both create 200 files in one directory at the same time
#            (empty on devdax, whose 2 MiB allocation unit could not hold 400
#            files with data; each holding "gN i" on ivshmem); then both
#            list it: exactly the 400 names, and on ivshmem every content
#   host     after poweroff: shmfs-dump of both backing files is consistent
#            with no host left in the table; a read-only host mount shows
#            the data file and the 400 names
#
# A shell loop with builtins only does the 200 creates: an exec costs ~40 ms
# under TCG.  See scenarios/share.sh for the scenario contract.

GUESTS=2
EXPECT_1="dax_mkfs ivshmem_mkfs dax_mount ivshmem_mount dax_copy_in ivshmem_copy_in
 dax_sees_mkdir dax_sees_create dax_sees_rename dax_sees_unlink dax_sees_rmdir
 ivshmem_sees_mkdir ivshmem_sees_create ivshmem_sees_rename ivshmem_sees_unlink ivshmem_sees_rmdir
 dax_concurrent ivshmem_concurrent ivshmem_concurrent_data dax_umount ivshmem_umount"
EXPECT_2="dax_mount ivshmem_mount dax_read_back ivshmem_read_back
 dax_mkdir dax_create dax_rename dax_unlink dax_rmdir
 ivshmem_mkdir ivshmem_create ivshmem_rename ivshmem_unlink ivshmem_rmdir
 dax_concurrent ivshmem_concurrent ivshmem_concurrent_data dax_umount ivshmem_umount"
EXPECT_HOST="host_dax_dump host_ivshmem_dump host_dax_mount host_dax_data host_dax_names host_dax_umount
 host_ivshmem_mount host_ivshmem_data host_ivshmem_names host_ivshmem_umount"

FSS="dax ivshmem"
T0=60        # s, waiting for the other guest to boot (TCG boots take seconds)
T=20         # s, any later wait: a change shows up in milliseconds
N=200        # files each guest creates in the concurrent step
DATA_SIZE=4194304

fs_spec() { if [ "$1" = dax ]; then echo "$DAX"; else echo "pci:$IVSHMEM_BDF"; fi; }

# ---- names: guest 2 changes, guest 1 sees ---------------------------------
# Step k: guest 2 does STEPk, guest 1 waits for SEENk and creates ack.k.
write_a() { echo "g2-$NONCE" >"$1/ns/a"; }
renamed() { [ -e "$1/ns/b" ] && [ ! -e "$1/ns/a" ]; }
# settled FILE WANT: FILE holds the line WANT, or reading it fails
settled() {
	local c
	c=$(cat "$1" 2>/dev/null) || return 0
	[ "$c" = "$2" ]
}
STEPS="mkdir create rename unlink rmdir"
step_do() { # STEP MNT
	case $1 in
	mkdir) mkdir "$2/ns" ;;
	create) write_a "$2" ;;
	rename) mv "$2/ns/a" "$2/ns/b" ;;
	unlink) rm "$2/ns/b" ;;
	rmdir) rmdir "$2/ns" ;;
	esac
}
step_seen() { # STEP MNT
	case $1 in
	mkdir) is_dir "$2/ns" ;;
	create) exists "$2/ns/a" ;;
	rename) renamed "$2" ;;
	unlink) absent "$2/ns/b" ;;
	rmdir) absent "$2/ns" ;;
	esac
}

watch_names() { # FS (guest 1)
	local m="/mnt/$1" k=0 s tmo seen
	for s in $STEPS; do
		k=$((k + 1))
		# The polls look before the change too: the kernel must drop
		# what it cached, negative entries included.
		tmo=$T
		[ $k = 1 ] && tmo=$T0 # guest 2 may still be booting
		if ! poll $tmo step_seen "$s" "$m"; then
			fail "$1_sees_$s" "guest 2's $s never showed up here in ${tmo}s: $(ls -la "$m" "$m/ns" 2>&1 | tr '\n' ' ' | head -c 300)"
			return 1
		fi
		seen=$POLL_MS
		# The new file's bytes too: the name shows up at the create, the
		# bytes once guest 2 closes the file (close-to-open).  Stop early
		# on a read error.
		if [ "$s" = create ] && ! poll $T settled "$m/ns/a" "g2-$NONCE"; then
			fail "$1_sees_$s" "the name showed up after polling $seen ms, but its content is still" \
				"'$(cat "$m/ns/a" 2>&1 | head -n 1)' after ${T}s, not g2-$NONCE"
		elif [ "$s" = create ] && ! has_line "$m/ns/a" "g2-$NONCE"; then
			fail "$1_sees_$s" "the name showed up after polling $seen ms, but reading it fails:" \
				"$(cat "$m/ns/a" 2>&1 | head -n 1)"
		elif [ "$s" = create ]; then
			pass "$1_sees_$s" "after polling $seen ms, its content $POLL_MS ms later"
		else
			pass "$1_sees_$s" "after polling $seen ms"
		fi
		true >"$m/ack.$k"
	done
}

make_names() { # FS (guest 2)
	local m="/mnt/$1" k=0 s t0 t1 rtts=""
	for s in $STEPS; do
		k=$((k + 1))
		now_ms
		t0=$NOW_MS
		if ! step_do "$s" "$m"; then
			fail "$1_$s" "$s in $m failed"
			return 1
		fi
		now_ms
		t1=$NOW_MS
		if poll $T exists "$m/ack.$k"; then
			pass "$1_$s" "took $((t1 - t0)) ms; guest 1 saw it and its ack was here $((NOW_MS - t0)) ms after the change began (round trip)"
			rtts="$rtts $((NOW_MS - t0))"
		else
			fail "$1_$s" "guest 1 did not acknowledge the $s within ${T}s"
			return 1
		fi
	done
	info "$1_rtt_ms" "${rtts# }"
}

# ---- concurrent creates in one directory ---------------------------------
concurrent() { # FS ME OTHER
	local fs="$1" me="$2" other="$3" m="/mnt/$1" d="/mnt/$1/conc" data=0
	[ "$me" = g1 ] && mkdir "$d"
	if ! poll $T is_dir "$d" || ! barrier "$m" go "$me" $T "$other"; then
		fail "${fs}_concurrent" "$other never came to the start line (no $m/go.$other)"
		return 1
	fi
	[ "$fs" = ivshmem ] && data=1
	make_files "$d" "$me" $N $data
	if ! barrier "$m" "done" "$me" $T "$other"; then
		fail "${fs}_concurrent" "$other never finished (no $m/done.$other after ${T}s); $MADE_ERRS of my creates failed"
		return 1
	fi
	want_files /tmp/want $N g1 g2
	if [ "$MADE_ERRS" != 0 ]; then
		fail "${fs}_concurrent" "$MADE_ERRS of my $N creates failed"
	else
		check_names "${fs}_concurrent" "$d" /tmp/want "$N of them made here in $MADE_MS ms while $other made its $N"
	fi
	[ $data = 1 ] && check_contents "${fs}_concurrent_data" "$d" /tmp/want
}

# ---- the guests -------------------------------------------------------------
guest_1() {
	ME=g1
	expect_ok dax_mkfs mkfs.shmfs -f -q -L "$LABEL-dax" -U "$UUID_A" "$DAX"
	expect_ok ivshmem_mkfs mkfs.shmfs -f -q -L "$LABEL-ivs" -U "$UUID_B" "pci:$IVSHMEM_BDF"
	for fs in $FSS; do fs_mount "${fs}_mount" "$(fs_spec "$fs")" "/mnt/$fs" g1; done
	head -c $DATA_SIZE /dev/urandom >/tmp/data.bin
	for fs in $FSS; do publish "${fs}_copy_in" /tmp/data.bin "/mnt/$fs" data.bin; done
	for fs in $FSS; do watch_names "$fs"; done
	for fs in $FSS; do concurrent "$fs" g1 g2; done
	for fs in $FSS; do fs_umount "${fs}_umount" "/mnt/$fs" "$(fs_spec "$fs")" "$ME"; done
	fs_syslog
}

guest_2() {
	ME=g2
	FS_FOREGROUND=1 # guest 1's daemons fork, as users run them; these keep libfuse's messages
	for fs in $FSS; do
		uuid=$UUID_A
		[ "$fs" = ivshmem ] && uuid=$UUID_B
		if wait_uuid "$(fs_spec "$fs")" "$uuid" $T0 "/tmp/$fs.json"; then
			fs_mount "${fs}_mount" "$(fs_spec "$fs")" "/mnt/$fs" g2
		else
			fail "${fs}_mount" "guest 1 never formatted $(fs_spec "$fs") (uuid $uuid) in ${T0}s"
		fi
	done
	for fs in $FSS; do verify_published "${fs}_read_back" "/mnt/$fs" data.bin $T0; done
	for fs in $FSS; do make_names "$fs"; done
	for fs in $FSS; do concurrent "$fs" g2 g1; done
	for fs in $FSS; do fs_umount "${fs}_umount" "/mnt/$fs" "$(fs_spec "$fs")" "$ME"; done
	fs_syslog
}

# ---- the host, after poweroff ----------------------------------------------
host_check() {
	want_files want.txt $N g1 g2
	for fs in $FSS; do
		if [ "$fs" = dax ]; then spec="$NVIMG,offset=$DAX_FILE_OFFSET" uuid=$UUID_A
		else spec=$IVIMG uuid=$UUID_B; fi
		"$BIN/shmfs-dump" --json "$spec" >"$fs.json" 2>"$fs.json.err"
		expect_json "host_${fs}_dump" "$fs.json" .superblock.uuid="$uuid" .consistent=true \
			'.errors|length'=0 '.hosts|length'=0
		m=$PWD/mnt-$fs
		fs_mount "host_${fs}_mount" "$spec" "$m" host ro || continue
		verify_published "host_${fs}_data" "$m" data.bin 1
		check_names "host_${fs}_names" "$m/conc" want.txt "in conc/, read-only on the host"
		fs_umount "host_${fs}_umount" "$m"
	done
}
