package pop3

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf8"
)

// SASL decoding errors. None of them carries the client's data: it may
// hold a password.
var (
	// ErrSASLMalformed: not base64, not three NUL-separated fields, not
	// UTF-8, an empty user name or password, or a NUL in one.
	ErrSASLMalformed = errors.New("malformed SASL response")
	// ErrSASLAuthzid: the authorization identity names someone else
	// than the authentication identity; nobody may act as another user.
	ErrSASLAuthzid = errors.New("authorization identity differs from authentication identity")
	// ErrSASLCancelled: the client sent "*" (RFC 5034 4).
	ErrSASLCancelled = errors.New("authentication cancelled")
)

// The LOGIN mechanism's challenges (draft-murchison-sasl-login), in base64.
const (
	LoginUserChallenge = "VXNlcm5hbWU6" // "Username:"
	LoginPassChallenge = "UGFzc3dvcmQ6" // "Password:"
)

// DecodeResponse decodes one SASL client response line (RFC 5034 4):
// "*" cancels (ErrSASLCancelled), "=" is an empty response, anything else
// must be strict standard base64.
func DecodeResponse(line string) ([]byte, error) {
	switch line {
	case "*":
		return nil, ErrSASLCancelled
	case "=":
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(line)
	if err != nil {
		return nil, ErrSASLMalformed
	}
	return b, nil
}

// ParsePlain splits a decoded PLAIN response (RFC 4616 2):
// authzid NUL authcid NUL passwd. An authzid other than empty or the
// authcid itself is refused with ErrSASLAuthzid.
func ParsePlain(resp []byte) (user, pass string, err error) {
	f := bytes.Split(resp, []byte{0})
	if len(f) != 3 {
		return "", "", ErrSASLMalformed
	}
	authz, user, pass := string(f[0]), string(f[1]), string(f[2])
	if err := CheckCredentials(user, pass); err != nil {
		return "", "", err
	}
	if !utf8.ValidString(authz) {
		return "", "", ErrSASLMalformed
	}
	if authz != "" && authz != user {
		return "", "", ErrSASLAuthzid
	}
	return user, pass, nil
}

// DecodePlain is DecodeResponse followed by ParsePlain.
func DecodePlain(line string) (user, pass string, err error) {
	b, err := DecodeResponse(line)
	if err != nil {
		return "", "", err
	}
	return ParsePlain(b)
}

// CheckCredentials checks a user name and password before they go to the
// auth daemon: UTF-8, no NUL, no line end, neither empty (so that no
// backend can take an empty password for an anonymous bind), user name at
// most 255 octets.
func CheckCredentials(user, pass string) error {
	switch {
	case user == "" || pass == "" || len(user) > 255:
		return ErrSASLMalformed
	case !utf8.ValidString(user) || !utf8.ValidString(pass):
		return ErrSASLMalformed
	case strings.ContainsAny(user, "\x00\r\n") || strings.ContainsAny(pass, "\x00\r\n"):
		return ErrSASLMalformed
	}
	return nil
}
