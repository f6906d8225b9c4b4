package main

import (
	"bufio"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"
)

func parseHdr(t testing.TB, s string) *hdrInfo {
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(s)))
	if err != nil {
		t.Fatal(err)
	}
	return newHdrInfo(h)
}

func TestDiskCacheRoundTrip(t *testing.T) {
	hs := map[string]*hdrInfo{
		"a": parseHdr(t, "From: A <a@x>, undisclosed:;\r\nTo: b@y\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nDate: Thu, 01 Jan 2026 10:00:00 +0130\r\nIn-Reply-To: <p@x> <q@x>\r\nMessage-ID: <m@x>\r\n\r\n"),
		"b": parseHdr(t, "Date: not a date\r\n\r\n"),
		"c": {env: &imap.Envelope{}},
	}
	var buf []byte
	buf = append(buf, cacheMagic...)
	for _, k := range []string{"a", "b", "c"} {
		buf = appendEntry(buf, k, hs[k])
	}
	got := map[string]*hdrInfo{}
	if err := decodeCache(buf, func(k string, h *hdrInfo) bool { got[k] = h; return true }); err != nil {
		t.Fatal(err)
	}
	for k, want := range hs {
		g := got[k]
		if g == nil {
			t.Fatalf("%s missing", k)
		}
		if !g.env.Date.Equal(want.env.Date) || g.env.Date.Format(time.RFC1123Z) != want.env.Date.Format(time.RFC1123Z) {
			t.Errorf("%s: date %v, want %v", k, g.env.Date, want.env.Date)
		}
		g.env.Date, want.env.Date = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("%s: got %+v %+v, want %+v %+v", k, g, g.env, want, want.env)
		}
	}
	if !hs["b"].badDate || hs["a"].badDate || hs["c"].badDate {
		t.Error("badDate wrong")
	}
	// Every truncation is an error or a shorter list, never a panic.
	for i := range buf {
		decodeCache(buf[:i], func(string, *hdrInfo) bool { return true })
	}
}

func FuzzDecodeCache(f *testing.F) {
	var buf []byte
	buf = append(buf, cacheMagic...)
	buf = appendEntry(buf, "k", parseHdr(f, "From: a@b\r\nSubject: s\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n\r\n"))
	f.Add(buf)
	f.Add([]byte(cacheMagic + "\x01k\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		decodeCache(data, func(k string, h *hdrInfo) bool {
			n++
			if h.env == nil {
				t.Fatal("nil envelope")
			}
			return n < 1000
		})
	})
}

func TestDiskCacheAcrossSessions(t *testing.T) {
	dir := newMaildir(t)
	deliver(t, dir, simpleMsg)
	deliver(t, dir, "From: x@y\nSubject: =?iso-8859-1?q?gr=FC=DFe?=\n\nbody\n")
	fetch := func() string {
		c, _ := startSession(t, dir, testSettings)
		r := newRaw(t, c)
		mustOK(t, r.cmd("SELECT INBOX"))
		lines := r.cmd("FETCH 1:* (ENVELOPE)")
		mustOK(t, lines)
		s := r.cmd(`SEARCH SUBJECT "grüße"`)
		r.cmd("LOGOUT")
		c.Close()
		return joined(lines[:len(lines)-1]) + joined(s[:len(s)-1])
	}
	first := fetch()
	time.Sleep(100 * time.Millisecond) // the first session's logout
	data, err := readCacheFile(dir + cacheFileName)
	if err != nil {
		t.Fatalf("no cache file: %v", err)
	}
	n := 0
	if err := decodeCache(data, func(string, *hdrInfo) bool { n++; return true }); err != nil || n != 2 {
		t.Fatalf("cache: %d entries, %v", n, err)
	}
	if second := fetch(); second != first {
		t.Errorf("from the cache:\n%s\nfrom the files:\n%s", second, first)
	}
	if !strings.Contains(first, "Alice") || !strings.Contains(first, "* SEARCH 2") {
		t.Errorf("unexpected output %s", first)
	}
	// A corrupt cache is ignored and rewritten.
	if err := os.WriteFile(dir+cacheFileName, []byte(cacheMagic+"\xff"), 0o600); err != nil {
		t.Fatal(err)
	}
	if third := fetch(); third != first {
		t.Errorf("with a corrupt cache:\n%s", third)
	}
}

// FuzzHeaderEnd checks headerEnd against the obvious definition: the end
// of the first empty line (LF or CRLF), or -1.
func FuzzHeaderEnd(f *testing.F) {
	for _, s := range []string{"", "\n", "\r\n", "a: b\n\nbody", "a: b\r\n\r\nbody", "a: b\n", "a: b\r\n\r", "\r\r\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := -1
		lineStart := 0
		for i := 0; i < len(b); i++ {
			if b[i] != '\n' {
				continue
			}
			line := b[lineStart:i]
			if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
				want = i + 1
				break
			}
			lineStart = i + 1
		}
		if got := headerEnd(b); got != want {
			t.Fatalf("headerEnd(%q) = %d, want %d", b, got, want)
		}
		if want >= 0 {
			parseHead(b[:want]) // must not panic
		}
	})
}
