package main

import (
	"fmt"
	"strings"

	"postern/internal/address"
	"postern/internal/config"
	"postern/internal/route"
	"postern/internal/smtp"
)

// policy evaluates the smtpd_*_restrictions lists in Postfix's meaning:
// each word is looked at in order, and the first that permits or rejects
// decides; a list that ends undecided permits.
type policy struct {
	relay, recipient, sender []string
	loginMaps                config.Maps
	route                    *route.Resolver
}

// facts are what the restrictions look at.
type facts struct {
	mynetworks bool
	saslUser   string
	sender     address.Address
	rcpt       *address.Address // nil at MAIL time
}

type verdict int

const (
	dunno verdict = iota
	permit
	reject
)

// evalList runs one restriction list; it returns the reply of a reject,
// or nil.
func (p *policy) evalList(list []string, f facts) (verdict, *smtp.Reply) {
	for _, w := range list {
		switch w {
		case "permit":
			return permit, nil
		case "reject":
			what := "Access denied"
			if f.rcpt != nil {
				return reject, &smtp.Reply{Code: 554, Enhanced: "5.7.1", Text: fmt.Sprintf("<%s>: Recipient address rejected: %s", f.rcpt, what)}
			}
			return reject, &smtp.Reply{Code: 554, Enhanced: "5.7.1", Text: fmt.Sprintf("<%s>: Sender address rejected: %s", f.sender, what)}
		case "permit_mynetworks":
			if f.mynetworks {
				return permit, nil
			}
		case "permit_sasl_authenticated":
			if f.saslUser != "" {
				return permit, nil
			}
		case "reject_unauth_destination":
			if f.rcpt != nil && p.route.Classify(*f.rcpt) == route.Remote && !p.route.RelayDomain(f.rcpt.Domain) {
				return reject, &smtp.Reply{Code: 554, Enhanced: "5.7.1", Text: fmt.Sprintf("<%s>: Relay access denied", f.rcpt)}
			}
		case "reject_sender_login_mismatch":
			if r := p.loginMismatch(f); r != nil {
				return reject, r
			}
		}
	}
	return dunno, nil
}

// loginMismatch: an authenticated client may use only sender addresses
// its login owns (smtpd_sender_login_maps, or the address that is the
// login name itself); an unauthenticated one may not use an address that
// has an owner. The null sender has no owner.
func (p *policy) loginMismatch(f facts) *smtp.Reply {
	if f.sender.IsNull() {
		return nil
	}
	addr := strings.ToLower(f.sender.Local) + "@" + f.sender.Domain
	owners, ok := p.loginMaps.LookupList(addr)
	if !ok {
		owners, ok = p.loginMaps.LookupList("@" + f.sender.Domain)
	}
	if f.saslUser == "" {
		if ok {
			return &smtp.Reply{Code: 553, Enhanced: "5.7.1", Text: fmt.Sprintf("<%s>: Sender address rejected: not logged in", f.sender)}
		}
		return nil
	}
	login := strings.ToLower(f.saslUser)
	if !ok && login == addr {
		return nil
	}
	for _, o := range owners {
		for _, x := range strings.Split(o, ",") {
			if strings.EqualFold(strings.TrimSpace(x), login) {
				return nil
			}
		}
	}
	return &smtp.Reply{Code: 553, Enhanced: "5.7.1", Text: fmt.Sprintf("<%s>: Sender address rejected: not owned by user %s", f.sender, f.saslUser)}
}

// atMail evaluates smtpd_sender_restrictions.
func (p *policy) atMail(f facts) *smtp.Reply {
	_, r := p.evalList(p.sender, f)
	return r
}

// atRcpt evaluates smtpd_relay_restrictions, then
// smtpd_recipient_restrictions.
func (p *policy) atRcpt(f facts) *smtp.Reply {
	if v, r := p.evalList(p.relay, f); v == reject {
		return r
	}
	if v, r := p.evalList(p.recipient, f); v == reject {
		return r
	}
	return nil
}

// refusesRelay reports whether a restriction list can stop a relay
// attempt; Postfix refuses to run when neither list can (an open relay).
func refusesRelay(list []string) bool {
	for _, w := range list {
		if w == "reject_unauth_destination" || w == "reject" {
			return true
		}
	}
	return false
}
