package auth

import (
	"crypto/sha512"
	"hash"
)

// SHA-crypt with SHA-512 ($6$), after Ulrich Drepper's "Unix crypt using
// SHA-256 and SHA-512" (2007/2008), the scheme of glibc's and libxcrypt's
// crypt(3) and of Dovecot's SHA512-CRYPT. The step numbers in the comments
// are the specification's.

const (
	sha512DefaultRounds = 5000
	sha512MinRounds     = 1000      // the specification clamps below this
	sha512MaxRounds     = 999999999 // and above this
	sha512SaltMax       = 16        // longer salts are cut, as the spec says
	sha512SumLen        = 86        // characters of the encoded digest
)

// cryptAlphabet is crypt(3)'s base-64 alphabet, used little end first.
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// sha512Crypt returns the 86-character encoded digest of password with
// salt (at most 16 bytes; the caller cuts it) and rounds (already clamped).
// Its cost grows with rounds times the password's length: callers bound
// both.
func sha512Crypt(password, salt []byte, rounds int) string {
	h := sha512.New()
	sum := func() []byte { return h.Sum(make([]byte, 0, sha512.Size)) }

	// Steps 4-8: digest B = password + salt + password.
	h.Write(password)
	h.Write(salt)
	h.Write(password)
	b := sum()

	// Steps 1-3, 9-12: digest A.
	h.Reset()
	h.Write(password)
	h.Write(salt)
	repeat(h, b, len(password))
	for n := len(password); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(password)
		}
	}
	a := sum()

	// Steps 13-16: the byte sequence P, from digest DP of the password
	// repeated once per byte of it.
	h.Reset()
	for range len(password) {
		h.Write(password)
	}
	p := stretch(sum(), len(password))

	// Steps 17-20: the byte sequence S, from digest DS of the salt
	// repeated 16+A[0] times.
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	s := stretch(sum(), len(salt))

	// Step 21: the rounds.
	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(c[:0])
	}
	return encodeSHA512(c)
}

// repeat writes digest over and over, n bytes in all.
func repeat(h hash.Hash, digest []byte, n int) {
	for ; n > len(digest); n -= len(digest) {
		h.Write(digest)
	}
	h.Write(digest[:n])
}

// stretch returns n bytes made of digest repeated.
func stretch(digest []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, digest[:min(len(digest), n-len(out))]...)
	}
	return out
}

// encodeSHA512 is step 22: the digest's bytes in the specification's
// shuffled order, 24 bits at a time, into crypt's base 64.
func encodeSHA512(c []byte) string {
	out := make([]byte, 0, sha512SumLen)
	put := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for range n {
			out = append(out, cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	// Triplets (i, i+21, i+42), rotated by i mod 3: (0,21,42),
	// (22,43,1), (44,2,23), (3,24,45), ...
	for i := 0; i < 21; i++ {
		x, y, z := c[i], c[i+21], c[i+42]
		switch i % 3 {
		case 0:
			put(x, y, z, 4)
		case 1:
			put(y, z, x, 4)
		default:
			put(z, x, y, 4)
		}
	}
	put(0, 0, c[63], 2)
	return string(out)
}

// isCryptBase64 reports whether s uses only crypt's alphabet.
func isCryptBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '/' || '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
