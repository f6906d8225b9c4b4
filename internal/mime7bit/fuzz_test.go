package mime7bit

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// FuzzConvert checks, whatever the input: no panic; only the two header
// errors; output all 7-bit with no line over 998 octets; converting the
// output changes nothing; and 7-bit input without CTE labels or long lines
// passes unchanged.
func FuzzConvert(f *testing.F) {
	f.Add([]byte(crlf("From: Jürgen <j@example.org>\nSubject: Grüße\nMIME-Version: 1.0\n"+
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n") + utf8Text +
		crlf("\n--b\nContent-Type: message/rfc822\n\nSubject: ü\n\nx\xe9\n--b\n"+
			"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"ü.bin\"\n\n\x00\xff\xfe\n--b--\n")))
	f.Add([]byte(crlf("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n=C3=A9\xe9 \n")))
	f.Add([]byte(crlf("Content-Transfer-Encoding: base64\n\nQUJD\xff\n")))
	f.Add([]byte(crlf("To: \"a\\\"ü\" <a@b>, (c\xc3\xa9) x@y, G\xc3\xa9: ;\n\n")))
	f.Add([]byte("Subject: x\n\n\xe9\rz\n"))
	f.Add([]byte(crlf("Content-Type: multipart/digest; boundary=\"q\"\n\n--q\n\nSubject: \xc3\xa9\n\nb\n--q--\n")))
	for seed := range 8 {
		g := &msgGen{r: rand.New(rand.NewPCG(uint64(seed), 5))}
		f.Add([]byte(g.entity(0, true)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		err := Convert(&out, bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrHeaders8Bit) && !errors.Is(err, ErrHeaderLimit) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if e := sevenBitErr(out.Bytes(), false); e != nil {
			t.Fatalf("%v:\n%q", e, out.Bytes())
		}
		if n, _ := Needs(bytes.NewReader(out.Bytes())); n {
			t.Fatal("Needs(output) is true")
		}
		var again bytes.Buffer
		if err := Convert(&again, bytes.NewReader(out.Bytes())); err != nil {
			t.Fatalf("converting the output: %v", err)
		}
		if again.String() != out.String() {
			t.Fatalf("converting the output changed it:\n%q\n%q", out.String(), again.String())
		}
		if !has8bit(data) && !hasLongLine(data) && !strings.Contains(strings.ToLower(string(data)), "transfer-encoding") &&
			!bytes.Equal(out.Bytes(), data) {
			t.Fatalf("7-bit input changed:\n%q\n%q", data, out.Bytes())
		}
	})
}
