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
subport=${POSTERN_DEMO_SUBMISSION_PORT:-2587}
tlsport=${POSTERN_DEMO_SUBMISSIONS_PORT:-2465}
pop3port=${POSTERN_DEMO_POP3_PORT:-2110}
pop3sport=${POSTERN_DEMO_POP3S_PORT:-2995}
imapport=${POSTERN_DEMO_IMAP_PORT:-2143}
imapsport=${POSTERN_DEMO_IMAPS_PORT:-2993}

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
	# TLS with a self-signed certificate, and the demo user's password
	# ("demo") for submission from a mail client.
	"$bin/postern" -c "$etc" tls new-server-cert -o "$etc" localhost 127.0.0.1 >/dev/null
	printf 'demo\n' | "$bin/postern" -c "$etc" passwd demo@example.test >"$etc/passwd.tmp"
	sed "s|\$|:$vuid:$vgid::$var/vmail/example.test/demo::|" "$etc/passwd.tmp" >"$etc/passwd"
	rm -f "$etc/passwd.tmp"
	chmod 0640 "$etc/passwd"
	"$bin/postern" -c "$etc" config -e \
		"smtpd_tls_cert_file = $etc/cert.pem" \
		"smtpd_tls_key_file = $etc/key.pem" \
		"auth_passwd_file = $etc/passwd"
	cat >>"$etc/services.conf" <<SVC
# Submission from mail clients (demo ports): STARTTLS on $subport, implicit TLS on $tlsport.
127.0.0.1:$subport inet n - y - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
127.0.0.1:$tlsport inet n - y - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
SVC
fi
if ! grep -q '^login/pop3d' "$etc/services.conf"; then
	cat >>"$etc/services.conf" <<SVC
# Reading mail (demo ports): POP3 with STLS on $pop3port, implicit TLS on $pop3sport;
# IMAP with STARTTLS on $imapport, implicit TLS on $imapsport.
127.0.0.1:$pop3port inet n - y - - pop3-login
127.0.0.1:$pop3sport inet n - y - - pop3-login
  -o pop3d_tls_wrappermode=yes
login/pop3d unix - n n - - pop3d
127.0.0.1:$imapport inet n - y - - imap-login
127.0.0.1:$imapsport inet n - y - - imap-login
  -o imapd_tls_wrappermode=yes
login/imapd unix - n n - - imapd
SVC
fi
chmod 0755 "$var"
[ "$(id -u)" = 0 ] && chown "$vuid:$vgid" "$var/vmail"

cat <<TXT

Postern demo: SMTP on 127.0.0.1:$port, configuration in $etc, spool in $var/spool.
Send a test message, for example:
    swaks --server 127.0.0.1:$port --to demo@example.test
    python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", $port).sendmail("me@localhost", ["demo@example.test"], "Subject: hello\r\n\r\nhi\r\n")'
It lands in the Maildir $var/vmail/example.test/demo/new/

From a mail client: user demo@example.test, password demo, with STARTTLS on
127.0.0.1:$subport or implicit TLS on 127.0.0.1:$tlsport (self-signed: $etc/cert.pem):
    swaks --server 127.0.0.1:$subport --tls --auth-user demo@example.test --auth-password demo \\
          --from demo@example.test --to demo@example.test
Read it with POP3 (STLS on 127.0.0.1:$pop3port, pop3s on $pop3sport) or IMAP
(STARTTLS on 127.0.0.1:$imapport, imaps on $imapsport), same user and password:
    curl --ssl-reqd --cacert $etc/cert.pem pop3://127.0.0.1:$pop3port/1 -u demo@example.test:demo
    curl --cacert $etc/cert.pem 'imaps://127.0.0.1:$imapsport/INBOX;UID=1' -u demo@example.test:demo
Queue: $bin/postern -c $etc queue list      Stop: Ctrl-C

TXT
exec "$bin/postern" -c "$etc" start-fg
