#!/bin/bash
# contrib/bench.sh (make bench): local delivery and relay throughput of
# Postern beside Postfix on the same machine, in the same run, under the
# same load.
#
# Load: smtp-source(1) from Debian's postfix package, SESSIONS parallel
# sessions, a new connection per message, N messages of SIZE bytes from
# bench@example.org, after a warm-up of WARMUP messages. Both MTAs listen
# on 127.0.0.1:2525, one at a time, with their default durability (fsync
# before 250, fsync of each Maildir file), logging to a file. Two modes:
#
#   local  Postern delivers to the virtual mailbox demo@example.test,
#          Postfix to the system user benchuser@localhost (home_mailbox =
#          Maildir/); a run ends when the Maildir's new/ holds all N files.
#          Before the warm-up and before the run the Maildir is moved
#          aside (not deleted: see clear_maildir) and the MTA makes a new
#          one.
#   relay  Both relay user@remote.example (smtp-source's address is in
#          mynetworks) to relayhost = [127.0.0.1]:2526, where smtp-sink(1)
#          takes every message and throws it away; a run ends when the
#          sink's running counter (-c) has counted N messages after the
#          warm-up. The brackets skip the MX lookup, so no DNS is involved;
#          smtp_tls_security_level = none in both (smtp-sink has no TLS).
#          A fresh sink per run; its CPU is reported as sink_cpu_s.
#
# Both MTAs carry the relay settings in every mode (they do not touch local
# delivery). Modes run one after the other (MODES order); within a mode,
# runs alternate (Postern first in odd runs, Postfix first in even ones) so
# that drift in the machine's load hits both alike.
#
# Per run it reports: accept time (smtp-source done), end-to-end time (all
# files in new/, or all messages at the sink), CPU seconds of every process
# of the MTA (a cgroup, or the sum of utime+stime+cutime+cstime over the
# master and its descendants in /proc when no cgroup can be made), peak
# RSS and PSS summed over those processes (sampled every 0.2 s from
# /proc/PID/smaps_rollup, so a process that lives less than that can be
# missed), the client's CPU and how busy the whole machine was. Once per
# MTA and mode, a separate run of WARMUP messages under strace -f counts
# fsync-family calls per message (its timing is not used). Then, per mode,
# a table of medians and the ratio Postern/Postfix.
#
# Run as root from a built tree (make build): it installs what is missing
# from Debian (postfix, procps, iproute2, util-linux, strace), creates the
# users postern, vmail, benchuser and the group postdrop when missing, and
# runs every measurement inside a private network namespace (unshare -n)
# whose only interface is lo, so nothing can leave the machine.
#
# Postfix runs as a private instance in the work directory (postfix -c DIR,
# its own main.cf, master.cf, queue and data directories): /etc/postfix and
# any Postfix the machine already runs are not touched. When this script
# installs the package it preseeds "No configuration", so Debian's own
# instance has no main.cf and never starts (nothing listens on port 25).
# apt-get runs with --no-remove: if installing postfix would remove another
# MTA (exim4, ...), the script stops and says so.
#
# Environment (defaults in brackets): RUNS [3], N [5000], SESSIONS [20],
# SIZE [4096], WARMUP [200], TIMEOUT [300] seconds per run before it is
# called failed, MODES ["local relay"], MTAS ["postern postfix"],
# RELAY_RCPT [user@remote.example], FSYNC_PROBE [1], SETTLE [65] seconds
# between the end of one run and the start of the next, after a sync and a
# drop of the clean caches (see settle; 0 skips all three),
# BENCH_WORKDIR [/var/tmp] (must allow Postfix's maillog_file, i.e. be
# below /var), BENCH_RESULTS [<repo>/bench-results], BENCH_KEEP [0]
# (1 keeps the work directory with both MTAs' logs and spools),
# BENCH_NO_CGROUP [0] (1 measures CPU and memory from /proc even where a
# cgroup could be made).
#
# Limits: a run that times out or whose smtp-source fails is reported with
# ok=0 and ends the remaining runs of that MTA in that mode; medians use
# the ok runs only. The relay count is the sink's: a message the MTA sent
# twice (after a lost connection) counts twice. CPU figures include each
# MTA's own logging. The machine's other load is not controlled:
# host_busy_pct and host_steal_pct in each line show it. Total time with
# the defaults: about 12-15 minutes on 2 CPUs (each run of each MTA in each
# mode: start, warm-up, N messages, stop).

# Functions are called through names built at run time ("${m}_start").
# shellcheck disable=SC2317
set -u
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3} N=${N:-5000} SESSIONS=${SESSIONS:-20} SIZE=${SIZE:-4096}
WARMUP=${WARMUP:-200} TIMEOUT=${TIMEOUT:-300} MTAS=${MTAS:-postern postfix}
MODES=${MODES:-local relay} RELAY_RCPT=${RELAY_RCPT:-user@remote.example}
FSYNC_PROBE=${FSYNC_PROBE:-1} SETTLE=${SETTLE:-65} LAST_END=$(date +%s) BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_WORKDIR=${BENCH_WORKDIR:-/var/tmp} BENCH_NO_CGROUP=${BENCH_NO_CGROUP:-0}
BENCH_RESULTS=${BENCH_RESULTS:-$top/bench-results}
PORT=2525 HOST=127.0.0.1 SINK_PORT=2526 SINK_HOST=127.0.0.1
FROM=bench@example.org
POSTERN_RCPT=demo@example.test POSTFIX_RCPT=benchuser@localhost
BIN=$top/bin

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: error: $*"; exit 1; }
# now_us sets NOW to the time in microseconds; without a subshell where
# bash has EPOCHREALTIME (the wait loops call it ten times a second).
now_us() { if [ -n "${EPOCHREALTIME:-}" ]; then NOW=${EPOCHREALTIME/./}; else NOW=$(date +%s%6N); fi; }
# deadline_us sets DEADLINE to TIMEOUT seconds from now.
deadline_us() { now_us; DEADLINE=$((NOW + TIMEOUT * 1000000)); }

# ---------------------------------------------------------------------------
# Phase 1, in the machine's own namespace: packages, users, directories.
# ---------------------------------------------------------------------------
prepare() {
	[ "$(id -u)" = 0 ] || die "run as root (it installs packages, creates users and runs MTAs)"
	for b in master smtpd cleanup qmgr local postern; do
		[ -x "$BIN/$b" ] || die "$BIN/$b missing: run 'make build' first"
	done
	for v in RUNS N SESSIONS SIZE WARMUP TIMEOUT; do
		case ${!v} in '' | *[!0-9]*) die "$v=${!v}: not a number" ;; esac
	done
	[ "$RUNS" -ge 1 ] && [ "$N" -ge 1 ] && [ "$SESSIONS" -ge 1 ] || die "RUNS, N and SESSIONS must be at least 1"
	for m in $MTAS; do
		case $m in postern | postfix) ;; *) die "MTAS: unknown MTA $m (postern, postfix)" ;; esac
	done
	[ -n "${MODES// /}" ] || die "MODES is empty (local, relay)"
	for m in $MODES; do
		case $m in local | relay) ;; *) die "MODES: unknown mode $m (local, relay)" ;; esac
	done
	case $RELAY_RCPT in *@*) ;; *) die "RELAY_RCPT=$RELAY_RCPT: not an address" ;; esac

	local pkgs="" installed_postfix=0
	[ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/smtp-sink ] || pkgs="$pkgs postfix"
	command -v ps >/dev/null || pkgs="$pkgs procps"
	command -v ip >/dev/null && command -v ss >/dev/null || pkgs="$pkgs iproute2"
	command -v unshare >/dev/null || pkgs="$pkgs util-linux"
	command -v timeout >/dev/null || pkgs="$pkgs coreutils"
	command -v useradd >/dev/null || pkgs="$pkgs passwd"
	[ "$FSYNC_PROBE" = 1 ] && ! command -v strace >/dev/null && pkgs="$pkgs strace"
	if [ -n "$pkgs" ]; then
		command -v apt-get >/dev/null || die "missing:$pkgs (and no apt-get to install them)"
		say "bench: installing from Debian:$pkgs"
		case $pkgs in *postfix*)
			# "No configuration": Debian's instance gets no main.cf, so
			# neither systemd (ConditionPathExists) nor the init script
			# ever starts it; the bench uses its own private instance.
			echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
			installed_postfix=1
			;;
		esac
		export DEBIAN_FRONTEND=noninteractive
		apt-get -q update >/dev/null || say "bench: apt-get update failed; trying the install anyway"
		# shellcheck disable=SC2086
		apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends --no-remove $pkgs >"$WORK/apt.log" 2>&1 ||
			{ tail -n 20 "$WORK/apt.log" >&2; die "apt-get install$pkgs failed (--no-remove: would it replace another MTA?)"; }
	fi
	if [ "$installed_postfix" = 1 ] && [ -e /etc/postfix/main.cf ]; then
		# debconf had an older answer than ours: do not leave that
		# instance running on port 25.
		/usr/sbin/postfix stop >/dev/null 2>&1 || true
	fi
	[ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/smtp-sink ] || die "/usr/sbin/smtp-source or smtp-sink missing after installing postfix"
	getent passwd nobody >/dev/null || die "user nobody missing (smtp-sink runs as nobody)"

	getent group postdrop >/dev/null || groupadd --system postdrop || die "groupadd postdrop"
	for u in postern vmail; do
		getent passwd $u >/dev/null ||
			useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $u || die "useradd $u"
	done
	getent passwd benchuser >/dev/null || useradd -m -s /usr/sbin/nologin benchuser || die "useradd benchuser"
	# Debian's postfix package creates the user postfix; a Postfix built
	# some other way may not have.
	getent passwd postfix >/dev/null || die "user postfix missing (is postfix installed from Debian?)"
}

# ---------------------------------------------------------------------------
# Process accounting: a cgroup per MTA when one can be made (it also counts
# processes that exited), else the master's process tree in /proc.
# ---------------------------------------------------------------------------
CG_BASE=""
cg_detect() {
	local b
	for b in /sys/fs/cgroup/cpuacct /sys/fs/cgroup /sys/fs/cgroup/unified; do
		[ -f "$b/cgroup.procs" ] || continue
		[ "$b" = /sys/fs/cgroup ] && [ ! -f "$b/cgroup.controllers" ] && continue
		if mkdir "$b/postern-bench-probe.$$" 2>/dev/null; then
			rmdir "$b/postern-bench-probe.$$"
			CG_BASE=$b
			return 0
		fi
	done
	return 1
}
cg_dir() { echo "$CG_BASE/postern-bench-$1"; }
cg_make() { [ -z "$CG_BASE" ] || mkdir -p "$(cg_dir "$1")"; }
cg_remove() { [ -z "$CG_BASE" ] || rmdir "$(cg_dir "$1")" 2>/dev/null || true; }

# sh -c "$CG_EXEC" "$(cg_arg MTA)" CMD...: execs CMD inside the MTA's
# cgroup, if there is one (what it forks stays there). One process
# throughout, so that with & in front $! is CMD's pid.
CG_EXEC='[ -z "$0" ] || echo $$ >"$0/cgroup.procs" || exit 126; exec "$@"'
cg_arg() { [ -z "$CG_BASE" ] || cg_dir "$1"; }
run_in() {
	local m=$1
	shift
	sh -c "$CG_EXEC" "$(cg_arg "$m")" "$@"
}

# root_pid MTA: the pid of its master process.
root_pid() {
	case $1 in
	postern) echo "${POSTERN_PID:-}" ;;
	postfix) [ -r "$W/postfix/spool/pid/master.pid" ] && tr -d ' \n' <"$W/postfix/spool/pid/master.pid" ;;
	esac
}

# mta_pids MTA: every process of the MTA, one a line.
mta_pids() {
	if [ -n "$CG_BASE" ]; then
		cat "$(cg_dir "$1")/cgroup.procs" 2>/dev/null
		return
	fi
	local r
	r=$(root_pid "$1")
	[ -n "$r" ] || return 0
	# One line per process: "pid (comm) state ppid ..."; comm may hold
	# spaces and parentheses, so fields are counted from the last ')'.
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$r" '
		{ pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " "); kids[f[2]] = kids[f[2]] " " pid }
		END {
			n = 1; q[1] = root
			for (i = 1; i <= n; i++) {
				print q[i]; c = split(kids[q[i]], k, " ")
				for (j = 1; j <= c; j++) q[++n] = k[j]
			}
		}'
}

# cpu_ns MTA: CPU time used by the MTA so far, in nanoseconds.
cpu_ns() {
	local d
	if [ -n "$CG_BASE" ]; then
		d=$(cg_dir "$1")
		if [ -f "$d/cpuacct.usage" ]; then
			cat "$d/cpuacct.usage"
		else
			awk '$1 == "usage_usec" { printf "%.0f\n", $2 * 1000 }' "$d/cpu.stat"
		fi
		return
	fi
	# utime+stime of each process, plus cutime+cstime: what its reaped
	# children used (a daemon that exits during the run is counted in
	# its master's cutime, having been counted in its own entry before).
	local files=() p
	for p in $(mta_pids "$1"); do files+=("/proc/$p/stat"); done
	[ ${#files[@]} -gt 0 ] || { echo 0; return; }
	cat "${files[@]}" 2>/dev/null | awk -v hz="$HZ" '
		{ rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " "); t += f[12] + f[13] + f[14] + f[15] }
		END { printf "%.0f\n", t * 1e9 / hz }'
}

# mem_now MTA: "rss_kb pss_kb nprocs" summed over the MTA's processes.
mem_now() {
	local files=() p
	for p in $(mta_pids "$1"); do files+=("/proc/$p/smaps_rollup"); done
	[ ${#files[@]} -gt 0 ] || { echo "0 0 0"; return; }
	cat "${files[@]}" 2>/dev/null | awk -v n=${#files[@]} '
		$1 == "Rss:" { r += $2 } $1 == "Pss:" { p += $2 } END { printf "%d %d %d\n", r, p, n }'
}

# sampler MTA OUT STOPFILE: samples memory every 0.2 s until STOPFILE
# exists, then writes the peaks to OUT.
sampler() {
	local m=$1 out=$2 stop=$3 r p n pr=0 pp=0 pn=0 k=0
	while :; do
		read -r r p n < <(mem_now "$m")
		[ "${r:-0}" -gt $pr ] && pr=$r
		[ "${p:-0}" -gt $pp ] && pp=$p
		[ "${n:-0}" -gt $pn ] && pn=$n
		k=$((k + 1))
		# The stop file, or the end of the shell that started us.
		[ -e "$stop" ] && break
		kill -0 $$ 2>/dev/null || exit 0
		sleep 0.2
	done
	echo "$pr $pp $pn $k" >"$out"
}

port_listening() { ss -Hltn "sport = :${1:-$PORT}" 2>/dev/null | grep -q .; }
wait_port() { # up|down SECONDS [PORT]
	local i=0 lim=$(($2 * 10)) port=${3:-$PORT}
	while [ $i -lt $lim ]; do
		if [ "$1" = up ]; then port_listening "$port" && return 0; else port_listening "$port" || return 0; fi
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

count_new() { # files in DIR/new (0 while it does not exist yet)
	[ -d "$1/new" ] || { echo 0; return; }
	find "$1/new" -mindepth 1 -maxdepth 1 -printf . 2>/dev/null | wc -c
}
# clear_maildir DIR: moves the Maildir out of the way, into $W/trash (removed
# with the work directory at the end), so that the next run starts with none
# and the MTA makes a new one. Moved, not deleted: on ext4 without a journal
# the inode allocator skips recently freed inodes one by one (for up to
# minutes while their inode table block is dirty), so deleting thousands of
# files just before a run would make the MTA's every file creation in that
# block group pay for the bench's own clean-up.
clear_maildir() {
	[ -e "$1" ] || return 0
	mkdir -p "$W/trash" || return 1
	mv "$1" "$(mktemp -u "$W/trash/maildir.XXXXXX")"
}
wait_count() { # MAILDIR COUNT DEADLINE(epoch us): 0 when reached
	while :; do
		[ "$(count_new "$1")" -ge "$2" ] && return 0
		now_us
		[ "$NOW" -gt "$3" ] && return 1
		sleep 0.1
	done
}

maildir_of() {
	case $1 in
	postern) echo "$W/postern/vmail/example.test/demo" ;;
	postfix) echo "$(getent passwd benchuser | cut -d: -f6)/Maildir" ;;
	esac
}
# rcpt_of MTA MODE: the recipient smtp-source sends to.
rcpt_of() {
	[ "$2" = relay ] && { echo "$RELAY_RCPT"; return; }
	case $1 in postern) echo $POSTERN_RCPT ;; postfix) echo $POSTFIX_RCPT ;; esac
}

# ---------------------------------------------------------------------------
# The relay target: smtp-sink on $SINK_HOST:$SINK_PORT, one per run. With -c
# it writes "sess=.. quit=.. mesg=N" records ending in \r to its stdout,
# flushed when "." is received, so the file's last record holds the count.
# (-M N is no use as the end of a run: smtp-sink exits before it answers
# the N-th ".", and the MTA then queues that message again.)
# ---------------------------------------------------------------------------
SINK_PID=""
sink_start() { # LOGFILE
	port_listening "$SINK_PORT" && { say "bench: $SINK_HOST:$SINK_PORT already in use"; return 1; }
	# -u nobody: smtp-sink refuses to keep root's privileges.
	/usr/sbin/smtp-sink -c -u nobody "$SINK_HOST:$SINK_PORT" 256 >"$1" 2>&1 &
	SINK_PID=$!
	SINK_LOG=$1
	wait_port up 10 "$SINK_PORT" && return 0
	say "bench: smtp-sink did not open $SINK_HOST:$SINK_PORT: $(tr '\r' '\n' <"$1" | tail -n 3)"
	sink_stop
	return 1
}
sink_stop() {
	[ -n "$SINK_PID" ] || return 0
	kill -TERM "$SINK_PID" 2>/dev/null
	wait "$SINK_PID" 2>/dev/null
	SINK_PID=""
	wait_port down 5 "$SINK_PORT" || say "bench: port $SINK_PORT still open after stopping smtp-sink"
}
# sink_count: messages the sink has received so far (its last mesg=).
sink_count() {
	tail -c 256 "$SINK_LOG" 2>/dev/null | tr '\r' '\n' | awk -F 'mesg=' 'NF > 1 { c = $2 + 0 } END { print c + 0 }'
}
# sink_cpu_ticks: utime+stime of the sink so far, in clock ticks.
sink_cpu_ticks() {
	[ -n "$SINK_PID" ] && [ -r "/proc/$SINK_PID/stat" ] || { echo 0; return; }
	awk '{ rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " "); print f[12] + f[13] }' "/proc/$SINK_PID/stat"
}
wait_sink() { # COUNT DEADLINE(epoch us): 0 when the sink has counted COUNT
	while :; do
		[ "$(sink_count)" -ge "$1" ] && return 0
		now_us
		[ "$NOW" -gt "$2" ] && return 1
		sleep 0.1
	done
}

# done_count MTA MODE: messages delivered so far in this run, from the
# Maildir's new/ or the sink's counter less what it had counted before
# (SINK_BASE: the warm-up).
done_count() {
	case $2 in
	local) count_new "$(maildir_of "$1")" ;;
	relay) echo $(($(sink_count) - ${SINK_BASE:-0})) ;;
	esac
}
# wait_done MTA MODE COUNT DEADLINE: 0 when COUNT messages were delivered.
wait_done() {
	case $2 in
	local) wait_count "$(maildir_of "$1")" "$3" "$4" ;;
	relay) wait_sink $((${SINK_BASE:-0} + $3)) "$4" ;;
	esac
}

# ---------------------------------------------------------------------------
# Postern: an instance in $W/postern, as tests/harness_test.go makes it.
# ---------------------------------------------------------------------------
postern_configure() {
	local d=$W/postern e=$W/postern/etc
	mkdir -p "$e" "$d/vmail" || return 1
	chmod 0755 "$d"
	"$BIN/postern" -c "$e" init >/dev/null || return 1
	printf 'demo@example.test  example.test/demo/\n' >"$e/vmailbox"
	printf 'postmaster: demo@example.test\n' >"$e/aliases"
	"$BIN/postern" -c "$e" config -e \
		"queue_directory = $d/spool" \
		"daemon_directory = $BIN" \
		"myhostname = mx.postern.test" \
		"mydestination = \$myhostname, localhost" \
		"alias_maps = texthash:$e/aliases" \
		"virtual_mailbox_domains = example.test" \
		"virtual_mailbox_base = $d/vmail" \
		"virtual_mailbox_maps = texthash:$e/vmailbox" \
		"virtual_uid_maps = static:$(id -u vmail)" \
		"virtual_gid_maps = static:$(id -g vmail)" \
		"maillog_file = $d/maillog" \
		"relayhost = [$SINK_HOST]:$SINK_PORT" \
		"smtp_tls_security_level = none" \
		"master_stop_timeout = 10s" >/dev/null || return 1
	sed -i -E "s/^smtp([[:space:]]+inet[[:space:]])/$HOST:$PORT\1/" "$e/services.conf"
	grep -Eq "^$HOST:${PORT}[[:space:]]+inet" "$e/services.conf" || { say "services.conf: no smtp inet line to rewrite"; return 1; }
	chown vmail:vmail "$d/vmail"
}
postern_start() {
	sh -c "$CG_EXEC" "$(cg_arg postern)" "$BIN/postern" -c "$W/postern/etc" start-fg >>"$W/postern/stderr" 2>&1 &
	POSTERN_PID=$!
	wait_port up 20 && return 0
	say "postern did not open $HOST:$PORT; last log lines:"
	tail -n 20 "$W/postern/maillog" "$W/postern/stderr" >&2 2>/dev/null
	return 1
}
postern_stop() {
	[ -n "${POSTERN_PID:-}" ] || return 0
	kill -TERM "$POSTERN_PID" 2>/dev/null
	local i=0
	while kill -0 "$POSTERN_PID" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	if kill -0 "$POSTERN_PID" 2>/dev/null; then
		say "bench: postern master $POSTERN_PID did not stop in 20 s: SIGKILL"
		kill -KILL "$POSTERN_PID" 2>/dev/null
	fi
	wait "$POSTERN_PID" 2>/dev/null
	POSTERN_PID=""
	kill_leftovers postern
}

# ---------------------------------------------------------------------------
# Postfix: a private instance in $W/postfix (Debian's defaults otherwise).
# ---------------------------------------------------------------------------
postfix_configure() {
	local d=$W/postfix e=$W/postfix/etc
	# Postfix wants its queue directory to exist and to be root's; it
	# makes what is below (postfix check) and wants data_directory to be
	# its own.
	install -d -m 0755 "$d" "$e" "$d/spool" || return 1
	install -d -o postfix -m 0700 "$d/data" || return 1
	# main.cf as Debian's "Local only" writes it, without TLS (neither
	# MTA offers it in this bench; smtp-source would not use it), and
	# then, as Debian's "Satellite system" would, all remote mail to the
	# relayhost (the sink).
	if [ -r /usr/share/postfix/main.cf.debian ]; then
		cp /usr/share/postfix/main.cf.debian "$e/main.cf"
	else
		echo "compatibility_level = 3.6" >"$e/main.cf"
	fi
	if [ -r /usr/share/postfix/master.cf.dist ]; then
		cp /usr/share/postfix/master.cf.dist "$e/master.cf"
	else
		cp /etc/postfix/master.cf "$e/master.cf" || return 1
	fi
	printf 'postmaster: root\n' >"$e/aliases"
	postconf -c "$e" -e \
		"queue_directory = $d/spool" \
		"data_directory = $d/data" \
		"myhostname = bench.localdomain" \
		"myorigin = \$myhostname" \
		"mydestination = \$myhostname, localhost" \
		"mynetworks = 127.0.0.0/8" \
		"inet_interfaces = loopback-only" \
		"inet_protocols = ipv4" \
		"relayhost = [$SINK_HOST]:$SINK_PORT" \
		"default_transport = smtp" \
		"relay_transport = relay" \
		"smtp_tls_security_level = none" \
		"mailbox_size_limit = 0" \
		"recipient_delimiter = +" \
		"home_mailbox = Maildir/" \
		"alias_maps = hash:$e/aliases" \
		"alias_database = hash:$e/aliases" \
		"maillog_file_prefixes = $d" \
		"maillog_file = $d/maillog" || return 1
	postalias -c "$e" "$e/aliases" || return 1
	sed -i -E "s/^smtp([[:space:]]+inet[[:space:]])/$HOST:$PORT\1/" "$e/master.cf"
	grep -Eq "^$HOST:${PORT}[[:space:]]+inet" "$e/master.cf" || { say "master.cf: no smtp inet line to rewrite"; return 1; }
	local md
	md=$(maildir_of postfix)
	install -d -o benchuser -g "$(id -g benchuser)" -m 0700 "$md" "$md/new" "$md/cur" "$md/tmp"
	# Creates the queue directories and checks ownership.
	postfix -c "$e" check >>"$d/stderr" 2>&1 || { tail -n 20 "$d/stderr" >&2; return 1; }
}
postfix_start() {
	local e=$W/postfix/etc
	# What Debian's unit does before a start: copy /etc files and NSS
	# libraries into the chroot of the chrooted daemons.
	MAIL_CONFIG=$e /usr/lib/postfix/configure-instance.sh - >>"$W/postfix/stderr" 2>&1 || true
	run_in postfix postfix -c "$e" start >>"$W/postfix/stderr" 2>&1 || { tail -n 20 "$W/postfix/stderr" >&2; return 1; }
	wait_port up 20 && return 0
	say "postfix did not open $HOST:$PORT; last log lines:"
	tail -n 20 "$W/postfix/maillog" "$W/postfix/stderr" >&2 2>/dev/null
	return 1
}
postfix_stop() {
	local pid
	postfix -c "$W/postfix/etc" status >/dev/null 2>&1 || { kill_leftovers postfix; return 0; }
	pid=$(root_pid postfix)
	postfix -c "$W/postfix/etc" stop >>"$W/postfix/stderr" 2>&1
	local i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	kill_leftovers postfix
}

# kill_leftovers MTA: SIGKILL to what is left of the MTA (processes this
# script started, nothing else), and wait for the port to close. With a
# cgroup: what is in it. Without: every process that names this run's
# configuration directory (Postern: -c DIR in its arguments; Postfix: its
# daemons inherit MAIL_CONFIG=DIR), read with builtins so that no helper
# process of ours matches.
kill_leftovers() {
	local p i=0 args envs e found
	if [ -n "$CG_BASE" ]; then
		while [ -s "$(cg_dir "$1")/cgroup.procs" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		for p in $(cat "$(cg_dir "$1")/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
	else
		for p in /proc/[0-9]*; do
			p=${p#/proc/}
			[ "$p" = $$ ] && continue
			case $1 in
			postern)
				mapfile -d '' args <"/proc/$p/cmdline" 2>/dev/null || continue
				[[ " ${args[*]} " == *" $W/postern/etc "* ]] || continue
				;;
			postfix)
				mapfile -d '' envs <"/proc/$p/environ" 2>/dev/null || continue
				found=0
				for e in "${envs[@]}"; do [ "$e" = "MAIL_CONFIG=$W/postfix/etc" ] && found=1; done
				[ $found = 1 ] || continue
				;;
			esac
			say "bench: killing leftover $1 process $p"
			kill -KILL "$p" 2>/dev/null
		done
	fi
	wait_port down 10 || say "bench: port $PORT still open after stopping $1"
}

mta_start() { "$1_start"; }
mta_stop() { "$1_stop"; }

# source_run MTA MODE COUNT OUTFILE: smtp-source with the bench's load; its
# rc. In the background and waited for, so that a TERM to this shell is
# acted on at once (bash runs a trap only after a foreground command ends).
source_run() {
	timeout "$TIMEOUT" /usr/sbin/smtp-source -s "$SESSIONS" -m "$3" -l "$SIZE" \
		-f "$FROM" -t "$(rcpt_of "$1" "$2")" "$HOST:$PORT" >"$4" 2>&1 &
	SOURCE_PID=$!
	local rc=0
	wait "$SOURCE_PID" || rc=$?
	SOURCE_PID=""
	return $rc
}

# children_cpu FILE: user+system seconds of a shell's reaped children, from
# the output of the times builtin in FILE.
children_cpu() {
	awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%.2f\n", t }' "$1"
}

# mode_start MTA MODE / mode_stop MTA MODE: the MTA, and in relay mode the
# sink before it (so that the MTA never finds its relayhost absent) and
# after it (so that nothing it still sends is refused).
mode_start() {
	SINK_BASE=0
	if [ "$2" = relay ]; then sink_start "$W/$1/sink-$RUN_TAG.out" || return 1; fi
	mta_start "$1" && return 0
	sink_stop
	return 1
}
mode_stop() {
	mta_stop "$1"
	sink_stop
	LAST_END=$(date +%s)
}

# settle: writes out what the last run left dirty, drops the clean caches
# and waits until SETTLE seconds have passed since it ended. On ext4
# without a journal the inode allocator skips, one by one, inodes freed in
# the last minute, and in the last six while their inode table block is
# dirty, which it becomes again as soon as the next run allocates one of
# its neighbours: a run that starts right after another MTA deleted
# thousands of queue files pays for that MTA's deletions, on every file it
# creates, for minutes. The allocator looks only at inode table blocks
# that are in the buffer cache (one that is not "must have been written
# out", fs/ext4/ialloc.c), so after sync and drop_caches a run pays for at
# most the other fifteen inodes of each block it loads. An MTA still pays
# for its own deletions within its run. Both MTAs start every run, warm-up
# included, with the same cold caches.
settle() {
	[ "$SETTLE" -gt 0 ] || return 0
	sync
	if [ -w /proc/sys/vm/drop_caches ]; then
		echo 3 >/proc/sys/vm/drop_caches || say "bench: could not drop caches (runs may pay for the last one's deletions)"
	fi
	local left=$((LAST_END + SETTLE - $(date +%s)))
	if [ "$left" -gt 0 ]; then
		say "bench: waiting ${left}s for inodes freed by the last run to be reusable (SETTLE)"
		sleep "$left"
	fi
}
# mode_clear MTA MODE: forget what was delivered so far (the Maildir is
# moved aside; the sink's count becomes the new base).
mode_clear() {
	case $2 in
	local) clear_maildir "$(maildir_of "$1")" ;;
	relay) SINK_BASE=$(sink_count) ;;
	esac
}

# measure MTA RUN MODE: one measured run; prints its key=value line on stdout.
measure() {
	local m=$1 run=$2 mode=$3 ok=1 why="" src_rc wait_rc=1
	RUN_TAG=$mode-$run
	settle
	say "== $mode: $m run $run/$RUNS: start, warm-up ($WARMUP msgs), $N msgs"
	mode_start "$m" "$mode" || { echo "mta=$m mode=$mode run=$run ok=0 why=start_failed"; return 1; }
	mode_clear "$m" "$mode"
	if [ "$WARMUP" -gt 0 ]; then
		deadline_us
		if ! source_run "$m" "$mode" "$WARMUP" "$W/$m/source-warmup.out" ||
			! wait_done "$m" "$mode" "$WARMUP" "$DEADLINE"; then
			say "bench: $m $mode warm-up failed ($(done_count "$m" "$mode") of $WARMUP delivered):"
			tail -n 5 "$W/$m/source-warmup.out" >&2
			mode_stop "$m" "$mode"
			echo "mta=$m mode=$mode run=$run ok=0 why=warmup_failed"
			return 1
		fi
		sleep 1
		mode_clear "$m" "$mode"
	fi

	local stop=$W/sampler.stop peak=$W/sampler.out c0 c1 t0 t1 t2 st0 st1 cl0 cl1 sk0 sk1
	rm -f "$stop" "$peak"
	sampler "$m" "$peak" "$stop" &
	SAMPLER_PID=$!
	st0=$(head -n 1 /proc/stat)
	c0=$(cpu_ns "$m")
	sk0=$(sink_cpu_ticks)
	# The client's CPU: what this shell's reaped children used, before
	# and after; smtp-source (through timeout) is the only one reaped
	# in between. times runs in this shell, not in a $(...) subshell,
	# which would report its own children.
	times >"$W/times0"
	deadline_us
	t0=$NOW
	source_run "$m" "$mode" "$N" "$W/$m/source.out"
	src_rc=$?
	now_us
	t1=$NOW
	times >"$W/times1"
	cl0=$(children_cpu "$W/times0")
	cl1=$(children_cpu "$W/times1")
	if [ "$src_rc" = 0 ]; then
		wait_done "$m" "$mode" "$N" "$DEADLINE"
		wait_rc=$?
	fi
	now_us
	t2=$NOW
	c1=$(cpu_ns "$m")
	sk1=$(sink_cpu_ticks)
	st1=$(head -n 1 /proc/stat)
	touch "$stop"
	wait "$SAMPLER_PID"
	SAMPLER_PID=""
	local delivered
	delivered=$(done_count "$m" "$mode")
	if [ "$src_rc" != 0 ]; then
		ok=0 why=smtp_source_rc_$src_rc
		say "bench: smtp-source failed (rc $src_rc):"
		tail -n 5 "$W/$m/source.out" >&2
	elif [ "$wait_rc" != 0 ]; then
		ok=0 why=timeout
		say "bench: $m delivered $delivered of $N within ${TIMEOUT}s"
	fi
	mode_stop "$m" "$mode"
	mode_clear "$m" "$mode"
	awk -v m="$m" -v mode="$mode" -v run="$run" -v n="$N" -v s="$SESSIONS" -v size="$SIZE" \
		-v t0="$t0" -v t1="$t1" -v t2="$t2" -v c0="$c0" -v c1="$c1" \
		-v mem="$(cat "$peak" 2>/dev/null)" -v cl0="$cl0" -v cl1="$cl1" \
		-v sk0="$sk0" -v sk1="$sk1" -v hz="$HZ" \
		-v st0="$st0" -v st1="$st1" -v ok="$ok" -v why="$why" -v dl="$delivered" \
		-v src="${CG_BASE:+cgroup}" -v date="$(date -Is)" 'BEGIN {
		split(mem, p, " ")
		acc = (t1 - t0) / 1e6; e2e = (t2 - t0) / 1e6; cpu = (c1 - c0) / 1e9
		sink = (sk1 - sk0) / hz
		printf "mta=%s mode=%s run=%d ok=%d n=%d sessions=%d size=%d", m, mode, run, ok, n, s, size
		printf " accept_s=%.2f accept_rate=%.1f e2e_s=%.2f e2e_rate=%.1f", acc, n / acc, e2e, n / e2e
		printf " cpu_s=%.2f cpu_s_per_1k=%.3f", cpu, cpu * 1000 / n
		printf " peak_rss_mb=%.1f peak_pss_mb=%.1f peak_procs=%d mem_samples=%d", p[1] / 1024, p[2] / 1024, p[3], p[4]
		# The client: smtp-source, and in relay mode the sink too.
		printf " client_cpu_s=%.2f", cl1 - cl0 + sink
		if (mode == "relay") printf " sink_cpu_s=%.2f", sink
		split(st0, a, " "); split(st1, b, " "); tot = 0
		for (i = 2; i <= 9; i++) tot += b[i] - a[i]
		if (tot > 0) printf " host_busy_pct=%.0f host_iowait_pct=%.0f host_steal_pct=%.0f",
			100 * (tot - (b[5] - a[5]) - (b[6] - a[6])) / tot, 100 * (b[6] - a[6]) / tot, 100 * (b[9] - a[9]) / tot
		printf " delivered=%d cpu_from=%s", dl, (src == "" ? "proc" : src)
		if (why != "") printf " why=%s", why
		printf " date=%s\n", date
	}'
	[ "$ok" = 1 ]
}

# fsync_probe MTA MODE: fsync-family calls per message over WARMUP
# messages, with strace -f attached to every process of the running MTA.
fsync_probe() {
	local m=$1 mode=$2 args=() p n=$WARMUP rc=0 out
	out=$W/$m/strace-$mode.txt
	[ "$n" -gt 0 ] || n=200
	RUN_TAG=$mode-probe
	say "== $mode: $m fsync probe ($n msgs under strace; its timing is not used)"
	mode_start "$m" "$mode" || { echo "mta=$m mode=$mode probe=fsync ok=0 why=start_failed"; return 1; }
	mode_clear "$m" "$mode"
	sleep 0.5
	for p in $(mta_pids "$m"); do args+=(-p "$p"); done
	strace -f -qq -c -o "$out" -e trace=fsync,fdatasync,sync_file_range,syncfs "${args[@]}" 2>"$W/$m/strace.err" &
	STRACE_PID=$!
	sleep 1
	source_run "$m" "$mode" "$n" "$W/$m/source-probe.out" || rc=1
	deadline_us
	[ $rc = 0 ] && { wait_done "$m" "$mode" "$n" "$DEADLINE" || rc=2; }
	sleep 1
	kill -INT "$STRACE_PID" 2>/dev/null
	wait "$STRACE_PID" 2>/dev/null
	STRACE_PID=""
	mode_stop "$m" "$mode"
	mode_clear "$m" "$mode"
	cp "$out" "$RES/$m-$mode-strace.txt" 2>/dev/null
	# strace -c: "% time seconds usecs/call calls [errors] syscall"; the
	# calls column is the 4th, the name the last.
	awk -v m="$m" -v mode="$mode" -v n="$n" -v rc="$rc" '
		$NF ~ /^(fsync|fdatasync|sync_file_range|syncfs)$/ && $4 ~ /^[0-9]+$/ { c[$NF] = $4; t += $4 }
		END {
			printf "mta=%s mode=%s probe=fsync ok=%d n=%d fsync_total=%d fsync_per_msg=%.2f", m, mode, rc == 0, n, t, t / n
			for (k in c) printf " %s=%d", k, c[k]
			printf "\n"
		}' "$out" 2>/dev/null || echo "mta=$m mode=$mode probe=fsync ok=0 why=no_strace_output"
}

# ---------------------------------------------------------------------------
# Summary: medians over the ok runs, and the ratio Postern/Postfix.
# ---------------------------------------------------------------------------
summary() { # MODE RESULTS
	awk -v mtas="$MTAS" -v mode="$1" '
	function kv(line, k,   i, a, n) { n = split(line, a, " "); for (i = 1; i <= n; i++) if (index(a[i], k "=") == 1) return substr(a[i], length(k) + 2); return "" }
	function median(m, k,   n, i, j, t, v) {
		n = cnt[m]; if (n == 0) return ""
		for (i = 1; i <= n; i++) v[i] = val[m, k, i] + 0
		for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
		return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	/^mta=/ && kv($0, "mode") != mode { next }
	/^mta=/ && / run=/ {
		m = kv($0, "mta"); total[m]++
		if (kv($0, "ok") != "1") next
		c = ++cnt[m]
		split("e2e_rate accept_rate cpu_s_per_1k peak_pss_mb peak_rss_mb", ks, " ")
		for (i in ks) val[m, ks[i], c] = kv($0, ks[i])
	}
	/^mta=/ && / probe=fsync/ && / ok=1/ { fs[kv($0, "mta")] = kv($0, "fsync_per_msg") }
	END {
		nm = split(mtas, ms, " ")
		split("e2e_rate accept_rate cpu_s_per_1k peak_pss_mb peak_rss_mb fsync", keys, " ")
		name["e2e_rate"] = "end-to-end msg/s (median)"; name["accept_rate"] = "accept msg/s (median)"
		name["cpu_s_per_1k"] = "CPU s per 1000 msgs"; name["peak_pss_mb"] = "peak PSS MB (sum)"
		name["peak_rss_mb"] = "peak RSS MB (sum)"; name["fsync"] = "fsync per msg (strace)"
		printf "%-28s", ""
		for (i = 1; i <= nm; i++) printf "%12s", ms[i]
		if (nm == 2) printf "%18s", ms[1] "/" ms[2]
		printf "\n%-28s", "ok runs"
		for (i = 1; i <= nm; i++) printf "%12s", (cnt[ms[i]] + 0) "/" (total[ms[i]] + 0)
		printf "\n"
		for (k = 1; k <= 6; k++) {
			printf "%-28s", name[keys[k]]
			for (i = 1; i <= nm; i++) {
				v[i] = (keys[k] == "fsync") ? fs[ms[i]] : median(ms[i], keys[k])
				if (v[i] == "") printf "%12s", "-"
				else printf (keys[k] == "cpu_s_per_1k" || keys[k] == "fsync") ? "%12.2f" : "%12.1f", v[i]
			}
			if (nm == 2) { if (v[1] != "" && v[2] != "" && v[2] + 0 != 0) printf "%18.2f", v[1] / v[2]; else printf "%18s", "-" }
			printf "\n"
		}
	}' "$2"
}

# ---------------------------------------------------------------------------
# Phase 2, inside the private network namespace: the measurements.
# ---------------------------------------------------------------------------
SAMPLER_PID="" SOURCE_PID="" STRACE_PID=""
cleanup_inner() {
	local m p
	# Our own helpers first: strace detaches on TERM, timeout passes it
	# on to smtp-source.
	for p in $STRACE_PID $SOURCE_PID $SAMPLER_PID; do kill -TERM "$p" 2>/dev/null; done
	for m in $MTAS; do
		mta_stop "$m" >/dev/null 2>&1
		kill_leftovers "$m" >/dev/null 2>&1
	done
	sink_stop >/dev/null 2>&1
	rm -f "$W/sampler.stop"
	for m in $MTAS; do cg_remove "$m"; done
}

inner() {
	ip link set lo up || die "ip link set lo up failed"
	HZ=$(getconf CLK_TCK)
	if [ "${BENCH_NO_CGROUP:-0}" != 1 ] && cg_detect; then say "bench: CPU from cgroups under $CG_BASE"; else say "bench: no cgroup could be made; CPU from /proc (master and descendants)"; fi
	trap cleanup_inner EXIT
	trap 'exit 130' INT TERM
	local m
	for m in $MTAS; do
		cg_make "$m" || die "cannot create cgroup $(cg_dir "$m")"
		"${m}_configure" || die "configuring $m failed"
	done
	local out=$RES/results.txt i order mode failed=""
	{
		echo "# $(date -Is) contrib/bench.sh host=$(hostname) cpus=$(nproc) kernel=$(uname -r) loadavg_before=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
		# Read-only git: no index refresh (the lead may be committing).
		echo "# postern $(git --no-optional-locks -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
			[ -n "$(git --no-optional-locks -C "$top" status --porcelain -uno 2>/dev/null)" ] && echo "+changes"); postfix $(postconf -d -h mail_version 2>/dev/null)"
		echo "# runs=$RUNS n=$N sessions=$SESSIONS size=$SIZE warmup=$WARMUP modes=\"$MODES\" new connection per message"
		echo "# relay: rcpt=$RELAY_RCPT relayhost=[$SINK_HOST]:$SINK_PORT (smtp-sink -c) smtp_tls_security_level=none"
	} >>"$out"
	for mode in $MODES; do
		for i in $(seq 1 "$RUNS"); do
			order=$MTAS
			[ $((i % 2)) = 0 ] && order=$(echo "$MTAS" | awk '{ for (i = NF; i > 0; i--) printf "%s%s", $i, (i > 1 ? " " : "") }')
			for m in $order; do
				case " $failed " in *" $mode:$m "*) continue ;; esac
				# Not in a pipe: measure must run in this shell, so
				# that cleanup_inner knows the pids it started.
				measure "$m" "$i" "$mode" >"$W/line" || failed="$failed $mode:$m"
				tee -a "$out" <"$W/line"
				sleep 2
			done
		done
		if [ "$FSYNC_PROBE" = 1 ]; then
			for m in $MTAS; do
				fsync_probe "$m" "$mode" >"$W/line"
				tee -a "$out" <"$W/line"
			done
		fi
	done
	for mode in $MODES; do
		echo
		case $mode in
		local) echo "Local delivery, $N msgs x $RUNS runs, $SESSIONS sessions, $SIZE-byte bodies, a new connection per message:" ;;
		relay) echo "Relay to smtp-sink ($RELAY_RCPT via [$SINK_HOST]:$SINK_PORT), $N msgs x $RUNS runs, $SESSIONS sessions, $SIZE-byte bodies, a new connection per message:" ;;
		esac
		summary "$mode" "$out"
	done | tee -a "$out"
	for m in $MTAS; do
		tail -n 200 "$W/$m/maillog" >"$RES/$m-maillog.tail" 2>/dev/null
	done
	[ -z "$failed" ]
}

# ---------------------------------------------------------------------------
if [ "${POSTERN_BENCH_INNER:-}" = 1 ]; then
	inner
	exit $?
fi

mkdir -p "$BENCH_WORKDIR" || die "cannot create $BENCH_WORKDIR"
W=$(mktemp -d "$BENCH_WORKDIR/postern-bench.XXXXXX") || die "mktemp in $BENCH_WORKDIR"
chmod 0755 "$W"
# The Orlov hint (chattr +T, ext2/3/4): the MTAs' directories below $W are
# spread over block groups of their own instead of the group of
# $BENCH_WORKDIR. Without a journal ext4 makes every new inode skip the
# inodes freed in its group in the last seconds to minutes, one by one, so
# an MTA whose files share a group with the other MTA's queue churn, or
# with whatever else was deleted there lately, would pay for it.
chattr +T "$W" 2>/dev/null || true
WORK=$W
RES=$BENCH_RESULTS/$(date +%Y%m%d-%H%M%S)
cleanup_outer() {
	if [ "$BENCH_KEEP" = 1 ]; then say "bench: work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup_outer EXIT
prepare
mkdir -p "$RES" || die "cannot create $RES"
case $W in /var/*) ;; *) say "bench: warning: $W is not below /var: Postfix may refuse maillog_file there" ;; esac
[ "$(stat -c %d "$W")" = "$(stat -c %d "$(getent passwd benchuser | cut -d: -f6)")" ] ||
	say "bench: warning: $W and ~benchuser are on different filesystems: fsync costs may differ"
say "bench: modes=\"$MODES\" runs=$RUNS n=$N sessions=$SESSIONS size=$SIZE warmup=$WARMUP mtas=\"$MTAS\"; work dir $W"
# Both MTAs are CPU-bound here: other work on the machine shows up as noise.
awk -v c="$(nproc)" '$1 > c / 4 { exit 0 } { exit 1 }' /proc/loadavg &&
	say "bench: note: load average $(cut -d' ' -f1-3 /proc/loadavg) before the start: other work is running, expect noise"
export W RES RUNS N SESSIONS SIZE WARMUP TIMEOUT MTAS MODES RELAY_RCPT FSYNC_PROBE BENCH_NO_CGROUP
# In the background so that the traps here run at once: Ctrl-C or a TERM
# is passed on as TERM, and the inner shell stops both MTAs before it exits
# (a background job ignores SIGINT, so it would not see Ctrl-C itself).
POSTERN_BENCH_INNER=1 unshare -n /bin/bash "$0" &
inner_pid=$!
trap 'kill -TERM $inner_pid 2>/dev/null' INT TERM
rc=0
wait $inner_pid || rc=$?
while kill -0 $inner_pid 2>/dev/null; do wait $inner_pid || rc=$?; done
trap - INT TERM
# Nothing of this bench may be left listening (port 25 of the real
# namespace is where a forgotten Debian Postfix would be).
if ss -Hltn 'sport = :25' 2>/dev/null | grep -q .; then
	say "bench: note: something listens on port 25 in the machine's namespace (not started by this script)"
fi
say "bench: raw results in $RES/ (results.txt: one line per run, strace summaries, log tails)"
exit $rc
