#!/bin/sh
# Installs what `make test` and `make check` use and a fresh machine lacks:
# Debian packages (swaks, mandoc, a syslog-free python3 is already there)
# and staticcheck from the Go module proxy. Idempotent; quiet when all is
# present. Needs root for apt-get; as an ordinary user it says what is
# missing and fails.
set -eu
need_pkgs=""
command -v swaks >/dev/null 2>&1 || need_pkgs="$need_pkgs swaks"
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || need_pkgs="$need_pkgs libnet-ssleay-perl"
command -v curl >/dev/null 2>&1 || need_pkgs="$need_pkgs curl"
command -v openssl >/dev/null 2>&1 || need_pkgs="$need_pkgs openssl"
command -v mandoc >/dev/null 2>&1 || need_pkgs="$need_pkgs mandoc"
command -v python3 >/dev/null 2>&1 || need_pkgs="$need_pkgs python3"
command -v useradd >/dev/null 2>&1 || need_pkgs="$need_pkgs passwd"
command -v unshare >/dev/null 2>&1 || need_pkgs="$need_pkgs util-linux"
# Mail clients and servers the POP3/IMAP tests and benchmark speak to
# (Dovecot is the yardstick of make bench; it is never started as a system
# service by the tests), Unix mail programs for the sendmail tests, and
# the Debian packaging tools for the package test.
command -v dovecot >/dev/null 2>&1 || need_pkgs="$need_pkgs dovecot-core"
[ -x /usr/lib/dovecot/pop3 ] || need_pkgs="$need_pkgs dovecot-pop3d"
[ -x /usr/lib/dovecot/imap ] || need_pkgs="$need_pkgs dovecot-imapd"
command -v fetchmail >/dev/null 2>&1 || need_pkgs="$need_pkgs fetchmail"
command -v getmail6 >/dev/null 2>&1 || command -v getmail >/dev/null 2>&1 || need_pkgs="$need_pkgs getmail6"
command -v mbsync >/dev/null 2>&1 || need_pkgs="$need_pkgs isync"
command -v mutt >/dev/null 2>&1 || need_pkgs="$need_pkgs mutt"
command -v bsd-mailx >/dev/null 2>&1 || need_pkgs="$need_pkgs bsd-mailx"
command -v dpkg-buildpackage >/dev/null 2>&1 || need_pkgs="$need_pkgs dpkg-dev"
command -v dh >/dev/null 2>&1 || need_pkgs="$need_pkgs debhelper"
command -v fakeroot >/dev/null 2>&1 || need_pkgs="$need_pkgs fakeroot"
command -v fail2ban-regex >/dev/null 2>&1 || need_pkgs="$need_pkgs fail2ban"
command -v logrotate >/dev/null 2>&1 || need_pkgs="$need_pkgs logrotate"
# Debian's postfix is a peer in the interoperability tests and the
# benchmark's yardstick; preseeded "No configuration", it never runs as the
# system's MTA (it has no main.cf), so nothing listens on port 25.
if [ ! -x /usr/sbin/postfix ]; then
	need_pkgs="$need_pkgs postfix"
	if [ "$(id -u)" = 0 ] && command -v debconf-set-selections >/dev/null 2>&1; then
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	fi
fi
if [ -n "$need_pkgs" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "make deps: missing packages:$need_pkgs (run 'make deps' as root once)" >&2
		exit 1
	fi
	echo "make deps: installing$need_pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends $need_pkgs >/dev/null
fi
gobin=$(go env GOPATH)/bin
if ! command -v staticcheck >/dev/null 2>&1 && [ ! -x "$gobin/staticcheck" ]; then
	echo "make deps: installing staticcheck"
	CGO_ENABLED=0 go install honnef.co/go/tools/cmd/staticcheck@2025.1.1
fi
