package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Scheme names, as Dovecot writes them between braces.
const (
	SchemeArgon2ID    = "ARGON2ID"
	SchemeArgon2I     = "ARGON2I"
	SchemeBlowfish    = "BLF-CRYPT"
	SchemeSHA512Crypt = "SHA512-CRYPT"
	// DefaultScheme is what Hash uses for "": memory-hard, no 72-byte
	// password limit, and what Dovecot recommends.
	DefaultScheme = SchemeArgon2ID
)

// Parameters of newly made hashes (Hash). Verification accepts any
// parameters within costLimits.
const (
	argon2Memory  = 64 << 10 // KiB: 64 MiB
	argon2Time    = 3
	argon2Threads = 1
	argon2SaltLen = 16
	argon2KeyLen  = 32
	bcryptCost    = 10
	sha512Rounds  = 200000
)

// MaxPasswordLen is the longest password Hash makes a hash of and a login
// is checked with. SHA512-CRYPT costs rounds times the password's length,
// so an unbounded password would let a client buy seconds of CPU per try.
const MaxPasswordLen = 512

// bcryptMaxKey is where bcrypt stops reading a password: every
// implementation (OpenBSD, crypt_blowfish, Dovecot) ignores the rest.
const bcryptMaxKey = 72

// costLimits bound the work a stored hash can demand. A hash over them is
// refused when the file is read (a typo such as m=6553600 would otherwise
// cost the daemon 6 GiB per check). A variable so that fuzz tests can
// lower it.
var costLimits = struct {
	bcryptCost   int
	argonMemory  uint32 // KiB
	argonTime    uint32
	argonThreads uint8
	shaRounds    int
}{
	bcryptCost:   16,
	argonMemory:  1 << 20, // 1 GiB
	argonTime:    64,
	argonThreads: 16,
	shaRounds:    10_000_000,
}

// hashed is a parsed password field, ready to verify against.
type hashed struct {
	scheme string // one of the Scheme* constants
	// BLF-CRYPT: the whole $2y$... string; cost for the dummy.
	bcrypt []byte
	cost   int
	// ARGON2ID and ARGON2I.
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
	// SHA512-CRYPT.
	rounds    int
	roundsSet bool
	shaSalt   string
	sum       string
}

// errUnsupported is wrapped by parse errors for schemes Postern does not
// check.
var errUnsupported = errors.New("unsupported password scheme")

// parseHash parses a passwd-file password field: {SCHEME}data, or data
// alone, which (as Dovecot's default scheme CRYPT does) is recognized by
// its $id$ prefix.
func parseHash(field string) (*hashed, error) {
	scheme, data := "CRYPT", field
	if strings.HasPrefix(field, "{") {
		end := strings.IndexByte(field, '}')
		if end < 0 {
			return nil, errors.New("password field starts with { but has no closing }")
		}
		scheme, data = strings.ToUpper(field[1:end]), field[end+1:]
	}
	want := ""
	switch scheme {
	case "CRYPT":
	case SchemeBlowfish, "BCRYPT":
		want = SchemeBlowfish
	case SchemeArgon2ID, SchemeArgon2I, SchemeSHA512Crypt:
		want = scheme
	case "PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC":
		return nil, fmt.Errorf("{%s}: clear-text passwords are refused; make a hash with postern passwd: %w", scheme, errUnsupported)
	case "":
		return nil, fmt.Errorf("empty scheme {}: %w", errUnsupported)
	default:
		return nil, fmt.Errorf("{%.32s}: %w (use BLF-CRYPT, ARGON2ID or SHA512-CRYPT)", scheme, errUnsupported)
	}
	var h *hashed
	var err error
	switch {
	case strings.HasPrefix(data, "$2a$"), strings.HasPrefix(data, "$2b$"), strings.HasPrefix(data, "$2y$"):
		h, err = parseBcrypt(data)
	case strings.HasPrefix(data, "$argon2id$"):
		h, err = parseArgon2(data, SchemeArgon2ID)
	case strings.HasPrefix(data, "$argon2i$"):
		h, err = parseArgon2(data, SchemeArgon2I)
	case strings.HasPrefix(data, "$6$"):
		h, err = parseSHA512(data)
	case strings.HasPrefix(data, "$2x$"):
		return nil, fmt.Errorf("$2x$ (crypt_blowfish's buggy variant): %w", errUnsupported)
	default:
		if want == "" {
			// Name the crypt(3) id ($1$, $5$, $y$...) if there is one,
			// and nothing else: the field may be a clear-text password
			// put there by mistake, and errors end up in logs.
			if rest, ok := strings.CutPrefix(data, "$"); ok {
				if id, _, ok := strings.Cut(rest, "$"); ok && len(id) <= 10 && isCryptBase64(id) {
					return nil, fmt.Errorf("crypt id $%s$ is not BLF-CRYPT, ARGON2ID or SHA512-CRYPT: %w", id, errUnsupported)
				}
			}
			if data == "" {
				return nil, errors.New("empty password field with a scheme")
			}
			return nil, fmt.Errorf("password field is not a hash of BLF-CRYPT, ARGON2ID or SHA512-CRYPT: %w", errUnsupported)
		}
		return nil, fmt.Errorf("{%s}: data is not a %s hash", scheme, want)
	}
	if err != nil {
		return nil, err
	}
	if want != "" && h.scheme != want {
		return nil, fmt.Errorf("{%s}: data is a %s hash", scheme, h.scheme)
	}
	return h, nil
}

// parseBcrypt checks $2b$NN$ + 22 salt + 31 hash characters.
func parseBcrypt(s string) (*hashed, error) {
	if len(s) != 60 || s[3] != '$' || s[6] != '$' {
		return nil, errors.New("BLF-CRYPT: malformed hash (want $2b$NN$ and 53 characters)")
	}
	cost, err := strconv.Atoi(s[4:6])
	if err != nil || s[4] < '0' || s[4] > '9' || cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("BLF-CRYPT: bad cost %q", s[4:6])
	}
	if cost > costLimits.bcryptCost {
		return nil, fmt.Errorf("BLF-CRYPT: cost %d over the limit of %d", cost, costLimits.bcryptCost)
	}
	if !isCryptBase64(s[7:]) {
		return nil, errors.New("BLF-CRYPT: bad character in salt or hash")
	}
	return &hashed{scheme: SchemeBlowfish, bcrypt: []byte(s), cost: cost}, nil
}

// parseArgon2 checks $argon2id$v=19$m=M,t=T,p=P$salt$hash, salt and hash
// in standard base 64 without padding (libsodium's and Dovecot's form).
func parseArgon2(s, scheme string) (*hashed, error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return nil, fmt.Errorf("%s: malformed hash (want $%s$v=19$m=..,t=..,p=..$salt$hash)", scheme, strings.ToLower(scheme))
	}
	if f[2] != "v=19" {
		return nil, fmt.Errorf("%s: version %.20q is not v=19", scheme, f[2])
	}
	var m, t, p uint64
	params := strings.Split(f[3], ",")
	if len(params) != 3 {
		return nil, fmt.Errorf("%s: parameters %.40q are not m=M,t=T,p=P", scheme, f[3])
	}
	for i, dst := range []*uint64{&m, &t, &p} {
		name := "mtp"[i : i+1]
		v, ok := strings.CutPrefix(params[i], name+"=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || v == "" || v[0] == '+' {
			return nil, fmt.Errorf("%s: parameters %.40q are not m=M,t=T,p=P", scheme, f[3])
		}
		*dst = n
	}
	switch {
	case t < 1 || t > uint64(costLimits.argonTime):
		return nil, fmt.Errorf("%s: t=%d not in 1..%d", scheme, t, costLimits.argonTime)
	case p < 1 || p > uint64(costLimits.argonThreads):
		return nil, fmt.Errorf("%s: p=%d not in 1..%d", scheme, p, costLimits.argonThreads)
	case m < 8*p || m > uint64(costLimits.argonMemory):
		return nil, fmt.Errorf("%s: m=%d not in %d..%d", scheme, m, 8*p, costLimits.argonMemory)
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(f[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return nil, fmt.Errorf("%s: salt is not 8 to 64 bytes of unpadded base 64", scheme)
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(f[5])
	if err != nil || len(key) < 16 || len(key) > 128 {
		return nil, fmt.Errorf("%s: hash is not 16 to 128 bytes of unpadded base 64", scheme)
	}
	return &hashed{scheme: scheme, memory: uint32(m), time: uint32(t), threads: uint8(p), salt: salt, key: key}, nil
}

// parseSHA512 checks $6$[rounds=N$]salt$hash.
func parseSHA512(s string) (*hashed, error) {
	rest := s[len("$6$"):]
	h := &hashed{scheme: SchemeSHA512Crypt, rounds: sha512DefaultRounds}
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		num, after, found := strings.Cut(r, "$")
		n, err := strconv.ParseUint(num, 10, 64)
		if !found || err != nil || num == "" || num[0] == '+' {
			return nil, fmt.Errorf("SHA512-CRYPT: bad rounds=%.20q", num)
		}
		// The specification clamps rather than refuses.
		h.rounds = int(min(max(n, sha512MinRounds), sha512MaxRounds))
		h.roundsSet = true
		rest = after
	}
	if h.rounds > costLimits.shaRounds {
		return nil, fmt.Errorf("SHA512-CRYPT: rounds=%d over the limit of %d", h.rounds, costLimits.shaRounds)
	}
	salt, sum, found := strings.Cut(rest, "$")
	if !found {
		return nil, errors.New("SHA512-CRYPT: malformed hash (want $6$salt$hash)")
	}
	if len(salt) > sha512SaltMax {
		salt = salt[:sha512SaltMax]
	}
	if len(sum) != sha512SumLen || !isCryptBase64(sum) {
		return nil, fmt.Errorf("SHA512-CRYPT: hash is not %d characters of crypt's base 64", sha512SumLen)
	}
	h.shaSalt, h.sum = salt, sum
	return h, nil
}

// verify reports whether password matches. Its time depends on the
// hash's parameters and the password's length, never on how much of the
// result matches.
func (h *hashed) verify(password string) bool {
	switch h.scheme {
	case SchemeBlowfish:
		pw := []byte(password)
		if len(pw) > bcryptMaxKey {
			pw = pw[:bcryptMaxKey]
		}
		return bcrypt.CompareHashAndPassword(h.bcrypt, pw) == nil
	case SchemeArgon2ID, SchemeArgon2I:
		var k []byte
		if h.scheme == SchemeArgon2ID {
			k = argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
		} else {
			k = argon2.Key([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
		}
		return subtle.ConstantTimeCompare(k, h.key) == 1
	case SchemeSHA512Crypt:
		sum := sha512Crypt([]byte(password), []byte(h.shaSalt), h.rounds)
		return subtle.ConstantTimeCompare([]byte(sum), []byte(h.sum)) == 1
	}
	return false
}

// costKey identifies a hash's scheme and parameters: hashes with equal
// keys take as long to check.
func (h *hashed) costKey() string {
	switch h.scheme {
	case SchemeBlowfish:
		return fmt.Sprintf("%s/%d", h.scheme, h.cost)
	case SchemeArgon2ID, SchemeArgon2I:
		return fmt.Sprintf("%s/%d/%d/%d/%d/%d", h.scheme, h.memory, h.time, h.threads, len(h.salt), len(h.key))
	}
	return fmt.Sprintf("%s/%d", h.scheme, h.rounds)
}

// dummyLike makes a hash of a random password with h's scheme and cost,
// for checking logins of unknown users in the time a real check takes.
func dummyLike(h *hashed) (*hashed, error) {
	pw := make([]byte, 32)
	rand.Read(pw)
	var enc string
	var err error
	switch h.scheme {
	case SchemeBlowfish:
		enc, err = hashBcrypt(pw, h.cost)
	case SchemeArgon2ID, SchemeArgon2I:
		enc = hashArgon2(h.scheme, pw, h.memory, h.time, h.threads, len(h.salt), len(h.key))
	default:
		enc = hashSHA512(pw, h.rounds)
	}
	if err != nil {
		return nil, err
	}
	return parseHash(enc)
}

// Hash makes a password field for a passwd-file: "{SCHEME}" and the hash,
// with a fresh random salt. scheme is ARGON2ID (also for ""), ARGON2I,
// BLF-CRYPT (or BCRYPT) or SHA512-CRYPT, in any case. BLF-CRYPT refuses
// passwords over 72 bytes rather than silently ignoring the rest.
func Hash(scheme, password string) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	if len(password) > MaxPasswordLen {
		return "", fmt.Errorf("password of %d bytes is longer than %d", len(password), MaxPasswordLen)
	}
	scheme, err := CanonicalScheme(scheme)
	if err != nil {
		return "", err
	}
	pw := []byte(password)
	switch scheme {
	case SchemeArgon2ID:
		return "{" + SchemeArgon2ID + "}" + hashArgon2(SchemeArgon2ID, pw, argon2Memory, argon2Time, argon2Threads, argon2SaltLen, argon2KeyLen), nil
	case SchemeArgon2I:
		return "{" + SchemeArgon2I + "}" + hashArgon2(SchemeArgon2I, pw, argon2Memory, argon2Time, argon2Threads, argon2SaltLen, argon2KeyLen), nil
	case SchemeBlowfish:
		if len(pw) > bcryptMaxKey {
			return "", fmt.Errorf("BLF-CRYPT uses only the first %d bytes of a password; this one has %d (use ARGON2ID)", bcryptMaxKey, len(pw))
		}
		h, err := hashBcrypt(pw, bcryptCost)
		if err != nil {
			return "", err
		}
		return "{" + SchemeBlowfish + "}" + h, nil
	}
	return "{" + SchemeSHA512Crypt + "}" + hashSHA512(pw, sha512Rounds), nil
}

// CanonicalScheme returns the name Hash writes for a scheme name given in
// any case: ARGON2ID for "" too, BLF-CRYPT for BCRYPT. Other names are an
// error.
func CanonicalScheme(scheme string) (string, error) {
	switch s := strings.ToUpper(scheme); s {
	case "", SchemeArgon2ID:
		return SchemeArgon2ID, nil
	case SchemeBlowfish, "BCRYPT":
		return SchemeBlowfish, nil
	case SchemeArgon2I, SchemeSHA512Crypt:
		return s, nil
	}
	return "", fmt.Errorf("unknown scheme %q (use ARGON2ID, BLF-CRYPT or SHA512-CRYPT)", scheme)
}

func hashArgon2(scheme string, pw []byte, m, t uint32, p uint8, saltLen, keyLen int) string {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	var key []byte
	if scheme == SchemeArgon2ID {
		key = argon2.IDKey(pw, salt, t, m, p, uint32(keyLen))
	} else {
		key = argon2.Key(pw, salt, t, m, p, uint32(keyLen))
	}
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$%s$v=19$m=%d,t=%d,p=%d$%s$%s", strings.ToLower(scheme), m, t, p, b64.EncodeToString(salt), b64.EncodeToString(key))
}

func hashBcrypt(pw []byte, cost int) (string, error) {
	if len(pw) > bcryptMaxKey {
		pw = pw[:bcryptMaxKey]
	}
	h, err := bcrypt.GenerateFromPassword(pw, cost)
	if err != nil {
		return "", fmt.Errorf("BLF-CRYPT: %w", err)
	}
	// Go's bcrypt is the corrected algorithm that $2b$ names; $2a$ means
	// different things to different crypt_blowfish versions.
	if len(h) > 4 && string(h[:4]) == "$2a$" {
		h[2] = 'b'
	}
	return string(h), nil
}

func hashSHA512(pw []byte, rounds int) string {
	b := make([]byte, sha512SaltMax)
	rand.Read(b)
	for i := range b {
		b[i] = cryptAlphabet[int(b[i])%len(cryptAlphabet)]
	}
	sum := sha512Crypt(pw, b, rounds)
	if rounds == sha512DefaultRounds {
		return "$6$" + string(b) + "$" + sum
	}
	return fmt.Sprintf("$6$rounds=%d$%s$%s", rounds, b, sum)
}

// Verify checks password against a password field as a passwd-file holds
// it. The error says why the field cannot be checked (malformed, an
// unsupported scheme, a cost over the limits); a wrong password is false
// with no error. Meant for tools and tests: the daemon parses each field
// once, when it reads the file.
func Verify(field, password string) (bool, error) {
	h, err := parseHash(field)
	if err != nil {
		return false, err
	}
	if len(password) > MaxPasswordLen {
		return false, nil
	}
	return h.verify(password), nil
}
