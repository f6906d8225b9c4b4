SHELL := /bin/bash
# Postern — see README.md. Every binary is static Go (CGO_ENABLED=0): only
# then does Go apply setuid/setgid to every thread (DESIGN.md §2).
export CGO_ENABLED = 0
GO        ?= go
PREFIX    ?= /usr/local
DESTDIR   ?=
SBINDIR   ?= $(PREFIX)/sbin
LIBEXECDIR ?= $(PREFIX)/libexec/postern
SYSCONFDIR ?= /etc
MANDIR    ?= $(PREFIX)/share/man
DOCDIR    ?= $(PREFIX)/share/doc/postern
VERSION   ?= 0.1

# DAEMONS go into LIBEXECDIR (daemon_directory), COMMANDS into SBINDIR.
DAEMONS   = master smtpd cleanup qmgr local smtp auth pickup showq pop3-login pop3d \
            imap-login imapd
COMMANDS  = postern sendmail postern-drop
# postern-drop is the one set-id program: setgid SETGID_GROUP (setgid_group).
SETGID_GROUP ?= postdrop
# SENDMAIL_LINK=yes also makes the paths other MTAs own point at our
# sendmail: /usr/sbin/sendmail, /usr/lib/sendmail, /usr/bin/mailq and
# /usr/bin/newaliases (under DESTDIR). INIT_CONFIG=no skips `postern init`
# (a package writes the configuration in its postinst instead).
SENDMAIL_LINK ?= yes
INIT_CONFIG ?= yes
LDFLAGS   = -s -w -X postern/internal/config.DefaultDaemonDirectory=$(LIBEXECDIR) \
            -X postern/internal/config.DefaultConfigDirectory=$(SYSCONFDIR)/postern
# Tests and `make run` use ./bin as daemon_directory through their config.
FUZZTIME  ?= 10s
TESTFLAGS ?=

.PHONY: all build test unit e2e fuzz run check deps bench install uninstall clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(DAEMONS) $(COMMANDS))

# deps installs what the tests use and a fresh machine lacks (as root, from
# Debian's packages and the Go module proxy). It is a no-op when all is there.
deps:
	@contrib/deps.sh

test: deps build unit fuzz e2e

unit:
	$(GO) test -count=1 -timeout 300s $(TESTFLAGS) ./internal/... ./cmd/...

# Every fuzz target runs briefly; a finding fails the build.
fuzz:
	@contrib/fuzz-all.sh $(FUZZTIME)

e2e: build
	$(GO) test -count=1 -timeout 1500s -v $(TESTFLAGS) ./tests/

run: build
	@contrib/run-demo.sh

check: deps
	@test -z "$$(gofmt -l cmd internal tests)" || { gofmt -l cmd internal tests; echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$$(go env GOPATH)/bin/staticcheck ./...
	mandoc -T lint -W warning man/man*/*.[0-9]

# Messages per second and memory, Postern beside Debian's Postfix under the
# same load (smtp-source, 20 sessions, 4 KB); see contrib/bench.sh.
bench: deps build
	contrib/bench.sh
	contrib/bench-mailaccess.sh

# install lays out what README "Installing" lists. DESTDIR is prepended to
# every path and recorded nowhere. postern-drop gets its group only when
# installing as root and SETGID_GROUP exists; otherwise make says what the
# packager or administrator must do, so that a DESTDIR install by an
# ordinary user works. The links that other MTAs own (SYSLINKS) are
# relative, so that they hold inside DESTDIR too; what another MTA had
# there (its program, or a link to it) is kept as FILE.pre-postern, and
# uninstall puts it back.
SYSLINKS  = /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases

install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSCONFDIR)/postern
	for c in $(COMMANDS); do install -m 0755 bin/$$c $(DESTDIR)$(SBINDIR)/$$c; done
	@drop=$(DESTDIR)$(SBINDIR)/postern-drop; \
	if [ "$$(id -u)" = 0 ] && getent group $(SETGID_GROUP) >/dev/null; then \
	  echo "chgrp $(SETGID_GROUP) $$drop && chmod 2755 $$drop"; \
	  chgrp $(SETGID_GROUP) $$drop && chmod 2755 $$drop; \
	else \
	  echo "make install: $$drop is installed mode 0755 without its group. As root, after"; \
	  echo "  groupadd --system $(SETGID_GROUP), run (a package does it in its postinst):"; \
	  echo "  chgrp $(SETGID_GROUP) $(SBINDIR)/postern-drop && chmod 2755 $(SBINDIR)/postern-drop"; \
	fi
	for l in mailq newaliases; do ln -sfn sendmail $(DESTDIR)$(SBINDIR)/$$l; done
	@if [ "$(SENDMAIL_LINK)" = yes ]; then \
	  for l in $(SYSLINKS); do \
	    t=$(DESTDIR)$$l; \
	    [ "$$(realpath -m $$t)" = "$$(realpath -m $(DESTDIR)$(SBINDIR)/sendmail)" ] && continue; \
	    install -d "$$(dirname $$t)" || exit 1; \
	    if [ -e "$$t" ] || [ -L "$$t" ]; then \
	      echo "make install: keeping the existing $$t as $$t.pre-postern"; \
	      mv -f "$$t" "$$t.pre-postern" || exit 1; \
	    fi; \
	    echo "ln -sfr $(DESTDIR)$(SBINDIR)/sendmail $$t"; \
	    ln -sfr $(DESTDIR)$(SBINDIR)/sendmail "$$t" || exit 1; \
	  done; \
	fi
	for d in $(DAEMONS); do install -m 0755 bin/$$d $(DESTDIR)$(LIBEXECDIR)/$$d; done
	for s in 1 5 8; do install -d $(DESTDIR)$(MANDIR)/man$$s; \
	  for f in man/man$$s/*.$$s; do if [ -e "$$f" ]; then install -m 0644 $$f $(DESTDIR)$(MANDIR)/man$$s/; fi; done; done
	install -d $(DESTDIR)$(DOCDIR)/examples
	install -m 0644 contrib/examples/README $(DESTDIR)$(DOCDIR)/examples/
	for e in contrib/examples/*/; do install -d $(DESTDIR)$(DOCDIR)/examples/$$(basename $$e); \
	  install -m 0644 $$e* $(DESTDIR)$(DOCDIR)/examples/$$(basename $$e)/; done
	@if [ "$(INIT_CONFIG)" = yes ] && [ ! -e $(DESTDIR)$(SYSCONFDIR)/postern/postern.conf ]; then \
	  echo "$(DESTDIR)$(SBINDIR)/postern -c $(DESTDIR)$(SYSCONFDIR)/postern init"; \
	  $(DESTDIR)$(SBINDIR)/postern -c $(DESTDIR)$(SYSCONFDIR)/postern init; fi

# uninstall removes what install put there, except the configuration and
# the spool, which hold the administrator's work and mail.
uninstall:
	@for l in $(SYSLINKS); do \
	  t=$(DESTDIR)$$l; \
	  [ "$$(realpath -m $$t)" = "$$(realpath -m $(DESTDIR)$(SBINDIR)/sendmail)" ] || continue; \
	  [ -L "$$t" ] || continue; \
	  echo "rm -f $$t"; rm -f "$$t"; \
	  if [ -e "$$t.pre-postern" ] || [ -L "$$t.pre-postern" ]; then echo "mv $$t.pre-postern $$t"; mv "$$t.pre-postern" "$$t"; fi; \
	done
	for c in $(COMMANDS) mailq newaliases; do rm -f $(DESTDIR)$(SBINDIR)/$$c; done
	for d in $(DAEMONS); do rm -f $(DESTDIR)$(LIBEXECDIR)/$$d; done
	-rmdir $(DESTDIR)$(LIBEXECDIR)
	for s in 1 5 8; do for f in man/man$$s/*.$$s; do rm -f $(DESTDIR)$(MANDIR)/man$$s/$${f##*/}; done; done
	rm -rf $(DESTDIR)$(DOCDIR)/examples
	-rmdir $(DESTDIR)$(DOCDIR)
	@echo "make uninstall: kept $(DESTDIR)$(SYSCONFDIR)/postern and the spool (queue_directory); remove them by hand"

clean:
	rm -rf bin tests/last-run.log
