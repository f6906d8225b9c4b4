package mime7bit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"runtime"
	"strings"
	"testing"
)

// crlf turns the LF line ends of a Go literal into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func convert(t *testing.T, in string) string {
	t.Helper()
	var out bytes.Buffer
	if err := Convert(&out, strings.NewReader(in)); err != nil {
		t.Fatalf("Convert: %v\ninput:\n%q", err, in)
	}
	check7bit(t, out.Bytes(), true)
	again := new(bytes.Buffer)
	if err := Convert(again, bytes.NewReader(out.Bytes())); err != nil {
		t.Fatalf("Convert of output: %v", err)
	}
	if again.String() != out.String() {
		t.Fatalf("converting the output changed it:\nfirst:\n%s\nsecond:\n%s", out.String(), again.String())
	}
	return out.String()
}

// check7bit fails unless b is all 7-bit with no line over 998 octets and,
// with wantCRLF, every LF preceded by CR.
func check7bit(t testing.TB, b []byte, wantCRLF bool) {
	t.Helper()
	if err := sevenBitErr(b, wantCRLF); err != nil {
		t.Fatalf("%v in output:\n%q", err, b)
	}
}

func sevenBitErr(b []byte, wantCRLF bool) error {
	for i, c := range b {
		if c >= 0x80 {
			return fmt.Errorf("8-bit octet %#x at %d", c, i)
		}
		if wantCRLF && c == '\n' && (i == 0 || b[i-1] != '\r') {
			return fmt.Errorf("bare LF at %d", i)
		}
	}
	for n, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > maxLine {
			return fmt.Errorf("line %d is %d octets", n+1, len(line))
		}
	}
	return nil
}

// leafPart is a leaf of a parsed message, its body decoded.
type leafPart struct {
	path string // e.g. "1.2" or "2/1" (a slash enters a message/rfc822)
	ct   string
	body string
}

// walk parses a message with the standard library, as a receiving mail
// reader would, and returns its leaves decoded.
func walk(t *testing.T, msg string) []leafPart {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v", err)
	}
	var out []leafPart
	walkEntity(t, "", m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, &out)
	return out
}

func walkEntity(t *testing.T, path, ct, cte string, body io.Reader, out *[]leafPart) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		mt = "text/plain"
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		mr := multipart.NewReader(body, params["boundary"])
		for i := 1; ; i++ {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("%s: NextRawPart: %v", path, err)
			}
			walkEntity(t, fmt.Sprintf("%s.%d", path, i), p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, out)
		}
	case mt == "message/rfc822":
		m, err := mail.ReadMessage(body)
		if err != nil {
			t.Fatalf("%s: inner message: %v", path, err)
		}
		walkEntity(t, path+"/", m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, out)
	default:
		var r io.Reader = body
		switch strings.ToLower(strings.TrimSpace(cte)) {
		case "quoted-printable":
			r = quotedprintable.NewReader(body)
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, body)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: decoding %s: %v", path, cte, err)
		}
		*out = append(*out, leafPart{path, mt, string(b)})
	}
}

func sameLeaves(t *testing.T, in, out string) {
	t.Helper()
	a, b := walk(t, in), walk(t, out)
	if len(a) != len(b) {
		t.Fatalf("input has %d leaves, output %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("leaf %d differs:\n in: %+q\nout: %+q", i, a[i], b[i])
		}
	}
}

// hdrValue returns the unfolded value of the first field name in msg.
func hdrValue(t *testing.T, msg, name string) string {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v", err)
	}
	return m.Header.Get(name)
}

func wordDecode(t *testing.T, s string) string {
	t.Helper()
	var d mime.WordDecoder
	v, err := d.DecodeHeader(s)
	if err != nil {
		t.Fatalf("DecodeHeader(%q): %v", s, err)
	}
	return v
}

const utf8Text = "Grüße aus Köln!\r\nDas Wetter ist schön, der Kaffee heiß.\r\n" +
	"Trailing space \r\nA line = with equals\r\n-- \r\nJürgen\r\n"

func TestTextPlainToQuotedPrintable(t *testing.T) {
	in := crlf("From: a@example.org\nTo: b@example.net\nSubject: hello\nMIME-Version: 1.0\n"+
		"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n") + utf8Text
	out := convert(t, in)
	if got := hdrValue(t, out, "Content-Transfer-Encoding"); got != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding = %q", got)
	}
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	if want := crlf("From: a@example.org\nTo: b@example.net\nSubject: hello\nMIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable"); head != want {
		t.Errorf("header:\n%s\nwant:\n%s", head, want)
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	if string(dec) != utf8Text {
		t.Errorf("decoded %q\nwant    %q", dec, utf8Text)
	}
	if !strings.Contains(body, "Das Wetter ist sch=C3=B6n") {
		t.Errorf("body is not readable quoted-printable:\n%s", body)
	}
}

func TestNonMIMEMessageGetsMIMEFields(t *testing.T) {
	in := crlf("From: a@example.org\nSubject: x\n\n") + utf8Text
	out := convert(t, in)
	for name, want := range map[string]string{
		"MIME-Version": "1.0", "Content-Type": "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
	} {
		if got := hdrValue(t, out, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	sameLeaves(t, in, out)

	// Not UTF-8: no charset is made up, the default stays.
	in = crlf("Subject: x\n\nol\xe9\n")
	out = convert(t, in)
	if hdrValue(t, out, "Content-Type") != "" || hdrValue(t, out, "MIME-Version") != "1.0" {
		t.Errorf("latin-1 body got:\n%s", out)
	}
	sameLeaves(t, in, out)
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestBinaryAttachmentToBase64(t *testing.T) {
	bin := randomBytes(1, 5000)
	textPart := crlf("Content-Type: text/plain; charset=us-ascii\n\nSee the attachment.\n")
	in := crlf("From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"=_b1\"\n\n"+
		"This is a MIME message.\n--=_b1\n") + textPart + crlf("--=_b1\n"+
		"Content-Type: application/octet-stream; name=x.bin\nContent-Transfer-Encoding: binary\n\n") +
		string(bin) + crlf("\n--=_b1--\nepilogue\n")
	out := convert(t, in)
	if !strings.Contains(out, "\r\n--=_b1\r\n"+textPart+"--=_b1\r\n") {
		t.Errorf("text part or boundaries changed:\n%s", out)
	}
	if !strings.Contains(out, "Content-Type: application/octet-stream; name=x.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n") {
		t.Errorf("attachment header:\n%s", out)
	}
	leaves := walk(t, out)
	if len(leaves) != 2 || leaves[1].body != string(bin) {
		t.Fatalf("attachment does not decode back to the original (%d leaves)", len(leaves))
	}
	if !strings.HasSuffix(out, "\r\n--=_b1--\r\nepilogue\r\n") {
		t.Errorf("end of message changed: %q", out[len(out)-40:])
	}
	sameLeaves(t, in, out)
}

func TestNestedMultipartAndMessage(t *testing.T) {
	inner := crlf("From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\nSubject: Grüße\nMIME-Version: 1.0\n"+
		"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n") + utf8Text
	in := crlf("From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n"+
		"Content-Transfer-Encoding: 8bit\n\npreamble ü\n--outer\n"+
		"Content-Type: multipart/alternative; boundary=\"inner\"\n\n--inner\n"+
		"Content-Type: text/plain; charset=utf-8\n\n") + utf8Text + crlf("\n--inner\n"+
		"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n<p>Grüße</p>\n--inner--\n"+
		"--outer\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n") + inner +
		crlf("--outer\nContent-Type: text/plain\n\nplain 7-bit part\n--outer--\n")
	out := convert(t, in)
	sameLeaves(t, in, out)
	if got := hdrValue(t, out, "Content-Transfer-Encoding"); got != "7bit" {
		t.Errorf("multipart relabelled %q, want 7bit", got)
	}
	if !strings.Contains(out, "\r\npreamble ??\r\n--outer\r\n") {
		t.Errorf("preamble not sanitised:\n%s", out)
	}
	if !strings.Contains(out, "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"+
		"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n") {
		t.Errorf("message/rfc822 part not converted as expected:\n%s", out)
	}
	if !strings.Contains(out, "--inner--\r\n--outer\r\nContent-Type: message/rfc822") ||
		!strings.Contains(out, "\r\n--outer\r\nContent-Type: text/plain\r\n\r\nplain 7-bit part\r\n--outer--\r\n") {
		t.Errorf("structure changed:\n%s", out)
	}
	leaves := walk(t, out)
	if len(leaves) != 4 || leaves[2].path != ".2/" || leaves[2].body != strings.TrimSuffix(utf8Text, "\r\n") {
		t.Errorf("leaves: %+q", leaves)
	}
}

func TestSevenBitPassesThrough(t *testing.T) {
	msgs := []string{
		crlf("From: a@example.org\nSubject: plain\n\nHello.\n"),
		crlf("From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed;\n boundary=\"b\"\n\n" +
			"preamble\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\nhi\n" +
			"--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n" +
			"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nK=C3=B6ln=\nsoft\n" +
			"--b\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body\n--b--\nepilogue"),
		"",
		crlf("Subject: no body"),
		crlf("Subject: =?utf-8?q?already_encoded_=C3=BC?=\n\n.\n..\nFrom the start\n"),
	}
	for _, in := range msgs {
		out := convert(t, in)
		if out != in {
			t.Errorf("7-bit message changed:\n in: %q\nout: %q", in, out)
		}
		if n, err := Needs(strings.NewReader(in)); n || err != nil {
			t.Errorf("Needs(7-bit) = %v, %v", n, err)
		}
	}
}

func TestHeaderEncoding(t *testing.T) {
	subject := "Grüße aus Köln — a rather long subject line with ünïcödé words, " +
		"so that it needs more than one encoded word and folding: Ωμέγα"
	in := crlf("From: Jürgen Müller <j@example.org>\n" +
		"To: \"Müller, Jürgen\" <j@example.org>, plain@example.net (Büro),\n  Group Ä: x@example.com;\n" +
		"Subject: " + subject + "\nX-Note:  leading  and   inner  spaces ü kept\n" +
		"Content-Type: text/plain; charset=utf-8\n" +
		"Content-Disposition: attachment; filename=\"Bericht Ü 2024.pdf\"\n\nbody\n")
	out := convert(t, in)
	head, _, _ := strings.Cut(out, "\r\n\r\n")
	if got := wordDecode(t, hdrValue(t, out, "Subject")); got != subject {
		t.Errorf("Subject decodes to %q", got)
	}
	from, err := mail.ParseAddress(hdrValue(t, out, "From"))
	if err != nil || from.Name != "Jürgen Müller" || from.Address != "j@example.org" {
		t.Errorf("From = %+v, %v (%q)", from, err, hdrValue(t, out, "From"))
	}
	to := hdrValue(t, out, "To")
	if got := wordDecode(t, to); got != "Müller, Jürgen <j@example.org>, plain@example.net (Büro),  Group Ä: x@example.com;" {
		t.Errorf("To decodes to %q (raw %q)", got, to)
	}
	list, err := mail.ParseAddressList(to)
	if err != nil || len(list) != 3 || list[0].Name != "Müller, Jürgen" || list[1].Address != "plain@example.net" ||
		list[2].Address != "x@example.com" {
		t.Errorf("To parses to %+v, %v", list, err)
	}
	if got := wordDecode(t, hdrValue(t, out, "X-Note")); got != "leading  and   inner  spaces ü kept" {
		t.Errorf("X-Note decodes to %q", got)
	}
	_, params, err := mime.ParseMediaType(hdrValue(t, out, "Content-Disposition"))
	if err != nil || params["filename"] != "Bericht Ü 2024.pdf" {
		t.Errorf("Content-Disposition: %v %v (%q)", params, err, hdrValue(t, out, "Content-Disposition"))
	}
	for _, line := range strings.Split(head, "\r\n") {
		if len(line) > 78 {
			t.Errorf("header line of %d octets: %q", len(line), line)
		}
	}
	if !strings.Contains(head, "Content-Type: text/plain; charset=utf-8\r\n") {
		t.Errorf("7-bit field changed:\n%s", head)
	}
}

// TestEncodedWordsAlreadyThere checks that encoded words next to new ones
// still decode with the white space between them.
func TestEncodedWordsAlreadyThere(t *testing.T) {
	in := crlf("From: =?utf-8?q?J=C3=BCrgen?= Müller <j@example.org>\n" +
		"Subject: =?utf-8?q?caf=C3=A9?= über =?utf-8?q?th=C3=A9?= and ünd\n\nx\n")
	out := convert(t, in)
	if got := wordDecode(t, hdrValue(t, out, "Subject")); got != "café über thé and ünd" {
		t.Errorf("Subject decodes to %q (%q)", got, hdrValue(t, out, "Subject"))
	}
	from, err := mail.ParseAddress(hdrValue(t, out, "From"))
	if err != nil || from.Name != "Jürgen Müller" {
		t.Errorf("From = %+v, %v", from, err)
	}
}

func TestLongHeaderLines(t *testing.T) {
	words := strings.Repeat("word ", 5000) + "end"
	umlauts := strings.Repeat("wörter ", 3000) + "ende"
	in := crlf("X-Long: " + words + "\nX-Umlauts: " + umlauts + "\n\nbody\n")
	out := convert(t, in)
	if got := hdrValue(t, out, "X-Long"); got != words {
		t.Errorf("X-Long refolded to %q...", got[:80])
	}
	if got := wordDecode(t, hdrValue(t, out, "X-Umlauts")); got != umlauts {
		t.Errorf("X-Umlauts decodes to %q...", got[:80])
	}
}

// TestUTF8AcrossPieces puts multi-octet characters across the borders of
// the 16 KiB read pieces: the body must still count as UTF-8.
func TestUTF8AcrossPieces(t *testing.T) {
	for _, pad := range []int{0, 1, 2, 3} {
		body := strings.Repeat("a", pad) + strings.Repeat("é€𝄞", 3000) + "\r\n"
		in := "Subject: x\r\n\r\n" + body
		out := convert(t, in)
		if hdrValue(t, out, "Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("pad %d: no charset=utf-8", pad)
		}
		sameLeaves(t, in, out)
	}
	for split := 1; split <= 4; split++ {
		var st stats
		p := []byte("x€é𝄞y")
		for len(p) > 0 {
			k := min(split, len(p))
			st.add(p[:k])
			p = p[k:]
		}
		if !st.validUTF8(true) {
			t.Errorf("split %d: valid UTF-8 judged invalid", split)
		}
		st = stats{}
		st.add([]byte("x\xe2\x82"))
		st.add([]byte("y"))
		if st.validUTF8(true) {
			t.Errorf("split %d: broken sequence judged valid", split)
		}
	}
}

// TestCRLFAcrossPieces ends a line of 16383 octets so that its CR and LF
// come in different read pieces, last before the delimiter or not.
func TestCRLFAcrossPieces(t *testing.T) {
	defer func(n int) { partBufferCap = n }(partBufferCap)
	line := "é" + strings.Repeat("a", readBufSize-3) + "\r\n"
	for _, partBufferCap = range []int{1 << 20, 100} {
		crlfAcrossPieces(t, line)
	}
}

func crlfAcrossPieces(t *testing.T, line string) {
	for _, ct := range []string{"text/plain; charset=utf-8", "application/octet-stream"} {
		for _, body := range []string{line, line + "next\r\n", "x\r\n" + line} {
			in := crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: "+ct+"\n\n") +
				body + crlf("\n--b\nContent-Type: "+ct+"\n\n") + body + crlf("--b--\n")
			out := convert(t, in)
			sameLeaves(t, in, out)
		}
	}
}

func TestParamsKeepASCIIValues(t *testing.T) {
	in := crlf("Content-Type: text/plain; charset=utf-8; name=\"ü.txt\"\n" +
		"Content-Disposition: attachment; filename=\"a b\\\"c.txt\"; size=12; creation-date=\"x;y\"; n=\"é\"\n\nx\n")
	out := convert(t, in)
	_, p, err := mime.ParseMediaType(hdrValue(t, out, "Content-Disposition"))
	if err != nil || p["filename"] != `a b"c.txt` || p["size"] != "12" || p["creation-date"] != "x;y" || p["n"] != "é" {
		t.Errorf("Content-Disposition %q: %v %v", hdrValue(t, out, "Content-Disposition"), p, err)
	}
	if mt, p, err := mime.ParseMediaType(hdrValue(t, out, "Content-Type")); err != nil || mt != "text/plain" ||
		p["charset"] != "utf-8" || p["name"] != "ü.txt" {
		t.Errorf("Content-Type: %v %v %v", mt, p, err)
	}
}

func TestLenientBoundary(t *testing.T) {
	for ct, want := range map[string]string{
		"multipart/mixed; boundary=abc; x":            "abc",
		"multipart/mixed; xboundary=no; boundary=ok;": "ok",
		`multipart/mixed; boundary = "q\"b" ;;`:       `q"b`,
		"multipart/mixed; boundary":                   "",
		"multipart/mixed; boundary=":                  "",
	} {
		if got := lenientParam(ct, "boundary"); got != want {
			t.Errorf("lenientParam(%q) = %q, want %q", ct, got, want)
		}
	}
}

func TestLongParameterIsContinued(t *testing.T) {
	name := strings.Repeat("Ärger über Öl ", 12) + ".txt"
	in := crlf("MIME-Version: 1.0\nContent-Type: text/plain; name=\"" + name + "\"\n\nx\n")
	out := convert(t, in)
	mt, params, err := mime.ParseMediaType(hdrValue(t, out, "Content-Type"))
	if err != nil || mt != "text/plain" || params["name"] != name {
		t.Errorf("got %q %v %v", mt, params, err)
	}
}

func TestHeaderErrors(t *testing.T) {
	for _, in := range []string{
		"Message-ID: <ü@example.org>\r\n\r\nx\r\n",
		"From: jürgen@example.org\r\n\r\nx\r\n",
		"To: Jürgen <jürgen@example.org>\r\n\r\nx\r\n",
		"Subject: caf\xe9\r\n\r\nx\r\n",
		"Received: from x (helo ü)\r\n\r\nx\r\n",
		"Content-Type: text/plain; name=caf\xc3\xa9\r\n\r\nx\r\n", // unquoted: ParseMediaType refuses
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-ID: <ü>\r\n\r\nx\r\n--b--\r\n",
	} {
		err := Convert(io.Discard, strings.NewReader(in))
		if !errors.Is(err, ErrHeaders8Bit) {
			t.Errorf("%q: err = %v, want ErrHeaders8Bit", in, err)
		}
	}
	long := "References: " + strings.Repeat("x", 1200) + "\r\n\r\nx\r\n"
	if err := Convert(io.Discard, strings.NewReader(long)); !errors.Is(err, ErrHeaderLimit) {
		t.Errorf("unfoldable long structured field: err = %v", err)
	}
	big := strings.Repeat("X-A: "+strings.Repeat("a ", 100)+"\r\n", 2000) + "\r\nx\r\n"
	if err := Convert(io.Discard, strings.NewReader(big)); !errors.Is(err, ErrHeaderLimit) {
		t.Errorf("huge header: err = %v", err)
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("0123456789", 150)
	in := crlf("Subject: " + long[:300] + " " + long + "\nX-Words: " + strings.Repeat("word ", 300) +
		"\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n" +
		"Content-Type: text/plain\n\n" + long + "\n--b\nContent-Transfer-Encoding: base64\n\n" +
		strings.Repeat("QUJD", 400) + "\xff\n--b\nContent-Transfer-Encoding: quoted-printable\n\n" +
		strings.Repeat("=C3=A9", 400) + "\xe9-\n--b--\n")
	out := convert(t, in)
	if got := wordDecode(t, hdrValue(t, out, "Subject")); got != long[:300]+" "+long {
		t.Errorf("Subject decodes to %q", got)
	}
	if got := hdrValue(t, out, "X-Words"); got != strings.Repeat("word ", 299)+"word" {
		t.Errorf("X-Words = %q", got)
	}
	leaves := walk(t, out)
	want := []string{long, strings.Repeat("ABC", 400), strings.Repeat("é", 400) + "\xe9-"}
	if len(leaves) != 3 {
		t.Fatalf("leaves %+q", leaves)
	}
	for i, w := range want {
		if leaves[i].body != w {
			t.Errorf("leaf %d = %q, want %q", i, leaves[i].body, w)
		}
	}
}

func TestQuotedPrintableEncoder(t *testing.T) {
	cases := []string{
		"end with space ",
		"tab\t\r\nnext",
		strings.Repeat("x", 74) + "é" + strings.Repeat("-", 200),
		strings.Repeat("a", 75) + "\r\n--boundary\r\n",
		"bare\rcr and \r\r\n crlf",
		strings.Repeat("é", 100),
		"=3D literally",
		"",
		"\r",
		"x\r\n",
	}
	for _, s := range cases {
		for _, split := range []int{1, 7, 1 << 20} {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			e := &qpEncoder{w: w}
			for p := []byte(s); len(p) > 0; {
				k := min(split, len(p))
				e.write(p[:k])
				p = p[k:]
			}
			e.finish(true)
			w.Flush()
			check7bit(t, out.Bytes(), true)
			prev := ""
			for _, line := range strings.Split(out.String(), "\r\n") {
				if len(line) > 76 {
					t.Errorf("%q: line of %d", s, len(line))
				}
				if strings.HasSuffix(prev, "=") && strings.HasPrefix(line, "-") {
					t.Errorf("%q: soft break before %q", s, line)
				}
				prev = line
			}
			dec, err := io.ReadAll(quotedprintable.NewReader(&out))
			if err != nil || string(dec) != s {
				t.Errorf("%q (split %d): decodes to %q, %v", s, split, dec, err)
			}
		}
	}
}

// TestOverCap makes the hold buffer small: bodies beyond it are decided
// on what was held and streamed.
func TestOverCap(t *testing.T) {
	defer func(n int) { partBufferCap = n }(partBufferCap)
	partBufferCap = 100
	text := strings.Repeat("a 7-bit line that is plain text\r\n", 20) + "and then ü\r\n"
	bin := string(randomBytes(2, 3000))
	in := crlf("Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"+
		"Content-Type: text/plain; charset=utf-8\n\n") + text + crlf("\n--b\n"+
		"Content-Type: image/png\n\n") + bin + crlf("\n--b\nContent-Type: text/plain\n\n") +
		strings.Repeat("only 7-bit\r\n", 30) + crlf("--b--\n")
	out := convert(t, in)
	sameLeaves(t, in, out)
	for _, want := range []string{
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
		"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n",
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestMalformed(t *testing.T) {
	deep := ""
	for i := range 40 {
		deep += fmt.Sprintf("Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	deep += "\r\nbody \xff\r\n"
	inputs := map[string]string{
		"no boundary":      crlf("MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\n\nbody \xff\n--x--\n"),
		"boundary absent":  crlf("Content-Type: multipart/mixed; boundary=zz\n\nonly \xff preamble\n" + strings.Repeat("\xfe", 3000) + "\n"),
		"no close":         crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nunterminated \xe9\n"),
		"bad ct":           crlf("Content-Type: multipart/mixed; ; boundary=\"b\"; x\n\n--b\n\n\xe9\n--b--\n"),
		"bad header line":  crlf("From a@example.org\nSubject: ok\n\nbody \xe9\n"),
		"8bit in name":     crlf("Sübject: x\nbody \xe9\n"),
		"leading cont":     crlf(" continued\nSubject: x\n\n\xe9\n"),
		"no blank line":    crlf("Subject: x\nnot a header \xe9\nmore\n"),
		"empty":            "",
		"only 8-bit":       "\xff\xfe\x00\r",
		"lf only":          "Subject: x\n\nol\xe9\nline\n",
		"part no blank":    crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b\n\xe9\n--b--\n"),
		"rfc822 empty":     crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n--b--\n"),
		"rfc822 bare":      crlf("Content-Type: message/rfc822\n\nSubject: ü\n\n\xe9\n"),
		"same boundary":    crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\n\xe9\n--b--\n--b--\n"),
		"digest":           crlf("Content-Type: multipart/digest; boundary=b\n\n--b\n\nSubject: ü\n\n\xe9\n--b--\n"),
		"deep":             deep,
		"multipart base64": crlf("Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n--b\n\n\xe9\n--b--\n"),
		"huge padding":     crlf("Content-Type: multipart/mixed; boundary=b\n\n--b" + strings.Repeat(" ", 2000) + "\n\n\xe9\n--b--" + strings.Repeat("\t", 20000) + "\n"),
		"long binary line": "Content-Type: application/octet-stream\r\n\r\n" + strings.Repeat("\xff", 70000),
		"header at eof":    "Subject: x\r\nX-Y: z",
		"cr lf split":      "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.Repeat("a", readBufSize-1) + "\r\n\xe9\r\n",
		"8-bit boundary":   crlf("Content-Type: multipart/mixed; boundary=\"b\xc3\xbc\"\n\n--b\xc3\xbc\n\nx\n--b\xc3\xbc--\n"),
		"qp eof escape":    "Content-Transfer-Encoding: quoted-printable\r\n\r\nab\xe9=4",
		"qp eof cr":        "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.Repeat("\xe9", readBufSize-1) + "\r",
		"unknown cte":      crlf("Content-Transfer-Encoding: x-uuencode\n\nbegin \xe9\n"),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Convert(&out, strings.NewReader(in)); err != nil {
				t.Fatalf("Convert: %v", err)
			}
			check7bit(t, out.Bytes(), false)
			var again bytes.Buffer
			if err := Convert(&again, bytes.NewReader(out.Bytes())); err != nil || again.String() != out.String() {
				t.Errorf("second conversion: %v, changed: %v\n%q\n%q", err, again.String() != out.String(), out.String(), again.String())
			}
		})
	}
}

func TestNeeds(t *testing.T) {
	if n, err := Needs(strings.NewReader("Subject: x\r\n\r\nbody\r\n")); n || err != nil {
		t.Errorf("7-bit: %v %v", n, err)
	}
	if n, err := Needs(io.MultiReader(strings.NewReader(strings.Repeat("a", 100000)), strings.NewReader("\x80"))); !n || err != nil {
		t.Errorf("8-bit at the end: %v %v", n, err)
	}
	boom := errors.New("boom")
	if _, err := Needs(io.MultiReader(strings.NewReader("abc"), errReader{boom})); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	if err := Convert(io.Discard, io.MultiReader(strings.NewReader("Subject: x\r\n\r\nabc"), errReader{boom})); !errors.Is(err, boom) {
		t.Errorf("Convert read error: %v", err)
	}
	if err := Convert(errWriter{boom}, strings.NewReader("Subject: x\r\n\r\n\xe9\r\n")); !errors.Is(err, boom) {
		t.Errorf("Convert write error: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

// patternReader yields n octets of a repeating pattern without holding
// them.
type patternReader struct {
	pat []byte
	n   int
	off int
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	k := 0
	for k < len(b) && p.n > 0 {
		c := copy(b[k:min(len(b), k+p.n)], p.pat[p.off:])
		p.off = (p.off + c) % len(p.pat)
		k += c
		p.n -= c
	}
	return k, nil
}

// TestMemoryBounded converts 24 MiB of bodies and checks that what it
// allocates stays near the documented bound.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	head := "Subject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\n\r\n"
	mid := "\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
	tail := "\r\n--b--\r\n"
	line := []byte("ein schöner Satz, der sich wiederholt, mit Umlauten: äöü ÄÖÜ ß\r\n")
	r := io.MultiReader(strings.NewReader(head), &patternReader{pat: randomBytes(3, 4099), n: 12 << 20},
		strings.NewReader(mid), &patternReader{pat: line, n: 12 << 20}, strings.NewReader(tail))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var counted countWriter
	if err := Convert(&counted, r); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 6<<20 {
		t.Errorf("allocated %d octets converting 24 MiB", alloc)
	} else {
		t.Logf("allocated %d octets, wrote %d", alloc, counted.n)
	}
	if counted.n < 24<<20 {
		t.Errorf("wrote only %d octets", counted.n)
	}
}

type countWriter struct{ n int }

func (c *countWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b >= 0x80 {
			return 0, errors.New("8-bit output")
		}
	}
	c.n += len(p)
	return len(p), nil
}
