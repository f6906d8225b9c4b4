#!/bin/bash
# contrib/bench-mailaccess.sh (make bench): POP3 and IMAP on a large
# mailbox, Postern beside Debian's Dovecot in the same run.
#
# One Maildir of N messages (default 10,000, ~4 KB each) is generated once
# (contrib/bench_mail.py make) and copied for each server, owned by vmail:
# Postern serves one copy as the virtual mailbox demo@example.test, a
# private Dovecot instance (dovecot -c, its own base_dir, ports and log,
# passwd-file passdb, static userdb) serves the other. Neither copy has an
# index or uid list to begin with; a first, unmeasured pass lets each
# server build them (Postern's dovecot-uidlist, Dovecot's index files), as
# a mailbox in daily use would have them. Then RUNS measured runs
# alternate between the servers:
#
#   pop3  login, UIDL, RETR of every message (seconds per phase)
#   imap  SELECT, FETCH 1:* (FLAGS ENVELOPE), FETCH of 1,000 full bodies,
#         SEARCH (header and body), STORE +FLAGS on all, SELECT of the
#         unchanged mailbox again (flags are put back after each run)
#
# Both run on loopback without TLS (each allows plaintext logins there), so
# the comparison is of the mailbox stores and protocol engines.
#
# Environment: N [10000], RUNS [5], MAIL_MODES ["pop3 imap"],
# BENCH_WORKDIR [/var/tmp], BENCH_RESULTS [<repo>/bench-results],
# BENCH_KEEP [0]. Run as root from a built tree.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
N=${N_MAIL:-${N:-10000}}
RUNS=${RUNS:-5}
MAIL_MODES=${MAIL_MODES:-"pop3 imap"}
results=${BENCH_RESULTS:-$top/bench-results}
mkdir -p "$results"
[ "$(id -u)" = 0 ] || { echo "bench-mailaccess: run as root" >&2; exit 1; }
command -v dovecot >/dev/null || { echo "bench-mailaccess: dovecot missing (make deps)" >&2; exit 1; }

getent group postdrop >/dev/null || groupadd --system postdrop
getent passwd postern >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin postern
getent passwd vmail >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail
vuid=$(id -u vmail); vgid=$(id -g vmail)

work=$(mktemp -d "${BENCH_WORKDIR:-/var/tmp}/postern-mailbench.XXXXXX")
chmod 0755 "$work"
cleanup() {
	[ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null || true
	[ -n "${ppid_:-}" ] && kill "$ppid_" 2>/dev/null || true
	wait 2>/dev/null || true
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench-mailaccess: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 1 100); do
		python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench-mailaccess: nothing listens on port $1" >&2
	return 1
}

echo "bench-mailaccess: generating a Maildir of $N messages"
python3 "$top/contrib/bench_mail.py" make "$work/master" "$N"
mkdir -p "$work/postern-mail/example.test" "$work/dovecot-mail/example.test"
cp -a "$work/master" "$work/postern-mail/example.test/demo"
cp -a "$work/master" "$work/dovecot-mail/example.test/demo"
chown -R "$vuid:$vgid" "$work/postern-mail" "$work/dovecot-mail"

# --- Postern -----------------------------------------------------------
etc=$work/postern/etc
mkdir -p "$etc"
"$bin/postern" -c "$etc" init >/dev/null
printf 'demo@example.test example.test/demo/\n' >"$etc/vmailbox"
printf 'postmaster: demo@example.test\n' >"$etc/aliases"
printf 'demo\n' | "$bin/postern" -c "$etc" passwd -s SHA512-CRYPT demo@example.test | sed "s|\$|:$vuid:$vgid::$work/postern-mail/example.test/demo::|" >"$etc/passwd"
chmod 0640 "$etc/passwd"
pport=$(free_port); pop=$(free_port); imp=$(free_port)
"$bin/postern" -c "$etc" config -e \
	"queue_directory = $work/postern/spool" "daemon_directory = $bin" \
	"myhostname = localhost.localdomain" "mydestination = localhost" \
	"alias_maps = texthash:$etc/aliases" \
	"virtual_mailbox_domains = example.test" "virtual_mailbox_base = $work/postern-mail" \
	"virtual_mailbox_maps = texthash:$etc/vmailbox" \
	"virtual_uid_maps = static:$vuid" "virtual_gid_maps = static:$vgid" \
	"auth_passwd_file = $etc/passwd" "auth_failure_delay = 0s" \
	"maillog_file = $work/postern/maillog" >/dev/null
sed -i "s/^smtp\([[:space:]]\+inet\)/127.0.0.1:$pport\1/" "$etc/services.conf"
cat >>"$etc/services.conf" <<SVC
127.0.0.1:$pop inet n - y - - pop3-login
login/pop3d unix - n n - - pop3d
127.0.0.1:$imp inet n - y - - imap-login
login/imapd unix - n n - - imapd
SVC
"$bin/postern" -c "$etc" start-fg >"$work/postern/out" 2>&1 &
ppid_=$!
wait_port "$pop"; wait_port "$imp"

# --- Dovecot -----------------------------------------------------------
dpop=$(free_port); dimp=$(free_port)
mkdir -p "$work/dovecot/run"
# The same SHA512-CRYPT hash as Postern's passwd-file: equal work per login.
cut -d: -f1,2 "$etc/passwd" >"$work/dovecot/passwd"
cat >"$work/dovecot/dovecot.conf" <<CONF
base_dir = $work/dovecot/run
state_dir = $work/dovecot/state
log_path = $work/dovecot/log
protocols = pop3 imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:$work/dovecot-mail/%d/%n
mail_uid = $vuid
mail_gid = $vgid
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = $work/dovecot/passwd
}
userdb {
  driver = static
  args = uid=$vuid gid=$vgid home=$work/dovecot-mail/%d/%n
}
service pop3-login {
  inet_listener pop3 {
    port = $dpop
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap-login {
  inet_listener imap {
    port = $dimp
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
mkdir -p "$work/dovecot/state"
dovecot -F -c "$work/dovecot/dovecot.conf" >"$work/dovecot/out" 2>&1 &
dpid=$!
wait_port "$dpop"; wait_port "$dimp"

host=$(hostname)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw=$results/mailaccess-$stamp.jsonl
run() { # mta mode port
	# The previous run renamed 20,000 files (STORE, then the flags put
	# back): write that out first, or the kernel's writeback competes
	# with whichever server runs next.
	sync
	python3 "$top/contrib/bench_mail.py" "$2" 127.0.0.1 "$3" demo@example.test demo |
		python3 -c "import json,sys; d=json.load(sys.stdin); d.update(mta='$1', mode='$2', run=$4); print(json.dumps(d))"
}
for mode in $MAIL_MODES; do
	if [ "$mode" = pop3 ]; then pp=$pop; dp=$dpop; else pp=$imp; dp=$dimp; fi
	echo "bench-mailaccess: $mode warm-up (index and uid list building, not measured)"
	run postern "$mode" "$pp" 0 >/dev/null
	run dovecot "$mode" "$dp" 0 >/dev/null
	for r in $(seq 1 "$RUNS"); do
		if [ $((r % 2)) = 1 ]; then
			run postern "$mode" "$pp" "$r" >>"$raw"; run dovecot "$mode" "$dp" "$r" >>"$raw"
		else
			run dovecot "$mode" "$dp" "$r" >>"$raw"; run postern "$mode" "$pp" "$r" >>"$raw"
		fi
	done
done

python3 - "$raw" "$N" "$host" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\nMail access, %s messages, host %s (medians of seconds; ratio = Postern/Dovecot, < 1 is faster)" % (sys.argv[2], sys.argv[3]))
for mode in ("pop3", "imap"):
    rs = [r for r in rows if r["mode"] == mode]
    if not rs:
        continue
    keys = [k for k in rs[0] if k.endswith("_s")]
    print("\n%-22s %10s %10s %8s" % (mode, "postern", "dovecot", "ratio"))
    for k in keys:
        p = statistics.median(r[k] for r in rs if r["mta"] == "postern")
        d = statistics.median(r[k] for r in rs if r["mta"] == "dovecot")
        print("%-22s %10.3f %10.3f %8.2f" % (k, p, d, p / d if d else float("nan")))
PY
echo "raw results: $raw"
