package pop3

import "strings"

// Implementation is the IMPLEMENTATION capability's text.
const Implementation = "Postern"

// Capa says what a CAPA reply (RFC 2449 5) lists besides what every state
// offers (TOP, UIDL, RESP-CODES, AUTH-RESP-CODE, PIPELINING).
type Capa struct {
	// User offers USER/PASS; SASL the mechanisms of AUTH. Both are
	// left out before TLS while plaintext logins are refused.
	User bool
	SASL []string
	// STLS: TLS is configured and not yet in use.
	STLS bool
}

// Lines returns the capability lines, without the +OK line and the final
// ".".
func (c Capa) Lines() []string {
	l := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if c.User {
		l = append(l, "USER")
	}
	if len(c.SASL) > 0 {
		l = append(l, "SASL "+strings.Join(c.SASL, " "))
	}
	if c.STLS {
		l = append(l, "STLS")
	}
	return append(l, "IMPLEMENTATION "+Implementation)
}

// WriteCapa writes the whole CAPA reply.
func (w *Writer) WriteCapa(c Capa) error {
	w.OK("Capability list follows")
	for _, l := range c.Lines() {
		w.Line(l)
	}
	return w.Line(".")
}
