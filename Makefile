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
VERSION   ?= 0.1

DAEMONS   = master smtpd cleanup qmgr local smtp auth
COMMANDS  = postern
LDFLAGS   = -s -w -X postern/internal/config.DefaultDaemonDirectory=$(LIBEXECDIR) \
            -X postern/internal/config.DefaultConfigDirectory=$(SYSCONFDIR)/postern
# Tests and `make run` use ./bin as daemon_directory through their config.
FUZZTIME  ?= 10s
TESTFLAGS ?=

.PHONY: all build test unit e2e fuzz run check deps bench install clean

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

install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSCONFDIR)/postern
	install -m 0755 bin/postern $(DESTDIR)$(SBINDIR)/postern
	for d in $(DAEMONS); do install -m 0755 bin/$$d $(DESTDIR)$(LIBEXECDIR)/$$d; done
	for s in 1 5 8; do install -d $(DESTDIR)$(MANDIR)/man$$s; \
	  for f in man/man$$s/*.$$s; do if [ -e "$$f" ]; then install -m 0644 $$f $(DESTDIR)$(MANDIR)/man$$s/; fi; done; done
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/postern/postern.conf ]; then \
	  $(DESTDIR)$(SBINDIR)/postern -c $(DESTDIR)$(SYSCONFDIR)/postern init; fi

clean:
	rm -rf bin tests/last-run.log
