#!/bin/sh
# `make run`: a whole Postern in the foreground with its configuration and
# spool in ./var (made on the first run), SMTP on 127.0.0.1:2525, and a
# demo virtual domain example.test with the mailbox demo@example.test.
# As root the daemons run with the real privilege separation (users
# postern, vmail and group postdrop are created when missing); as an
# ordinary user everything runs as that user. Ctrl-C stops it cleanly.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
var=$top/var
etc=$var/etc
bin=$top/bin
port=${POSTERN_DEMO_PORT:-2525}

if [ "$(id -u)" = 0 ]; then
	getent group postdrop >/dev/null || groupadd --system postdrop
	getent passwd postern >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin postern
	getent passwd vmail >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail
	vuid=$(id -u vmail); vgid=$(id -g vmail)
else
	vuid=$(id -u); vgid=$(id -g)
fi

if [ ! -e "$etc/postern.conf" ]; then
	mkdir -p "$etc" "$var/vmail"
	"$bin/postern" -c "$etc" init >/dev/null
	printf '# demo mailboxes: address  path below virtual_mailbox_base (trailing / = Maildir)\ndemo@example.test  example.test/demo/\n' >"$etc/vmailbox"
	printf '# local aliases (aliases(5) format)\npostmaster: demo@example.test\nroot: demo@example.test\n' >"$etc/aliases"
	"$bin/postern" -c "$etc" config -e \
		"queue_directory = $var/spool" \
		"daemon_directory = $bin" \
		"myhostname = localhost.localdomain" \
		"mydestination = localhost.localdomain, localhost" \
		"alias_maps = texthash:$etc/aliases" \
		"virtual_mailbox_domains = example.test" \
		"virtual_mailbox_base = $var/vmail" \
		"virtual_mailbox_maps = texthash:$etc/vmailbox" \
		"virtual_uid_maps = static:$vuid" \
		"virtual_gid_maps = static:$vgid" \
		"queue_run_delay = 60s" "minimal_backoff_time = 60s"
	sed -i "s/^smtp\([[:space:]]\+inet\)/127.0.0.1:$port\1/" "$etc/services.conf"
fi
chmod 0755 "$var"
[ "$(id -u)" = 0 ] && chown "$vuid:$vgid" "$var/vmail"

cat <<TXT

Postern demo: SMTP on 127.0.0.1:$port, configuration in $etc, spool in $var/spool.
Send a test message, for example:
    swaks --server 127.0.0.1:$port --to demo@example.test
    python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", $port).sendmail("me@localhost", ["demo@example.test"], "Subject: hello\r\n\r\nhi\r\n")'
It lands in the Maildir $var/vmail/example.test/demo/new/
Queue: $bin/postern -c $etc queue list      Stop: Ctrl-C

TXT
exec "$bin/postern" -c "$etc" start-fg
