package dns

import (
	"context"
	"errors"
	"fmt"
)

// The causes a lookup can fail with; test them with errors.Is. Every error
// a lookup returns is an *Error wrapping one of these or a cause of its own.
var (
	// ErrNullMX: the domain publishes a null MX (RFC 7505) and accepts no
	// mail. Permanent.
	ErrNullMX = errors.New("domain accepts no mail (null MX)")
	// ErrNoSuchDomain: the name does not exist (NXDOMAIN). Permanent.
	ErrNoSuchDomain = errors.New("no such domain (NXDOMAIN)")
	// ErrNoAddress: the host has neither AAAA nor A records, or does not
	// exist. Permanent for an implicit MX, "try the next MX" otherwise.
	ErrNoAddress = errors.New("host has no IPv6 or IPv4 address")
	// ErrInvalidName: the name cannot be looked up (not ASCII, too long, an
	// empty label, a character that no host name has). Permanent.
	ErrInvalidName = errors.New("invalid domain name")
	// ErrCNAMELoop: the CNAMEs loop or their chain is longer than
	// MaxCNAMEs. Temporary: a remote misconfiguration that may be fixed.
	ErrCNAMELoop = errors.New("CNAME loop or chain too long")
	// ErrNoMXHost: every MX record names a host that cannot be one (a
	// name with characters no host name has). Permanent.
	ErrNoMXHost = errors.New("no usable host in the MX records")
	// ErrServerFailure: no server gave an answer (SERVFAIL, REFUSED, a
	// timeout, a network error, only garbage). Temporary.
	ErrServerFailure = errors.New("name service failure")
)

// Error is the error of a lookup.
type Error struct {
	// Type is what was asked: "MX", "A", "AAAA" or "A/AAAA".
	Type string
	// Name is the name that was looked up; when a CNAME target failed,
	// Err names the target.
	Name string
	// Err is the cause: one of the Err variables of this package, wrapped
	// with detail, or the context's error.
	Err error
	// Temporary tells that a later lookup may succeed.
	Temporary bool
}

// Error says what failed, in the shape of Postfix's "Host or domain name not
// found. Name service error for name=... type=MX: ..." logs.
func (e *Error) Error() string {
	return fmt.Sprintf("dns lookup of %s %s: %v", e.Type, e.Name, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// IsTemporary reports whether err is a failure that a later lookup may not
// have: a server failure, a timeout, a cancelled context, a CNAME loop. A
// nil error, ErrNoSuchDomain, ErrNullMX, ErrNoAddress and ErrInvalidName
// are not temporary.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, ErrServerFailure) || errors.Is(err, ErrCNAMELoop)
}
