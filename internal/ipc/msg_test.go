package ipc

import (
	"bytes"
	"strings"
	"testing"
)

func TestMsgAccessors(t *testing.T) {
	m := NewMsg("request", "deliver", "rcpt", "a@x", "odd")
	m.Add("rcpt", "b@y").AddInt("size", -42).Add("empty", "")
	if got := m.Get("request"); got != "deliver" {
		t.Errorf("Get request = %q", got)
	}
	if got := m.Get("odd"); got != "" || !m.Has("odd") {
		t.Errorf("trailing name: Get %q Has %v", got, m.Has("odd"))
	}
	if got := m.All("rcpt"); len(got) != 2 || got[0] != "a@x" || got[1] != "b@y" {
		t.Errorf("All rcpt = %q", got)
	}
	if n, err := m.Int("size"); err != nil || n != -42 {
		t.Errorf("Int size = %d, %v", n, err)
	}
	if _, err := m.Int("missing"); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("Int missing: %v", err)
	}
	if _, err := m.Int("request"); err == nil || !strings.Contains(err.Error(), `"request"`) {
		t.Errorf("Int of non-number: %v", err)
	}
	if m.Has("nope") || m.Get("nope") != "" || m.All("nope") != nil {
		t.Error("absent name reported present")
	}
	if m.Len() != 6 || strings.Join(m.Names(), ",") != "request,rcpt,odd,rcpt,size,empty" {
		t.Errorf("Len %d Names %v", m.Len(), m.Names())
	}
	var nilMsg *Msg
	if nilMsg.Get("x") != "" || nilMsg.Has("x") || nilMsg.Len() != 0 || nilMsg.All("x") != nil {
		t.Error("nil Msg accessors")
	}
	if nilMsg.Add("a", "b").Get("a") != "b" {
		t.Error("Add on nil Msg")
	}
}

func TestEncodeDecode(t *testing.T) {
	bin := string([]byte{0, 1, 2, '\r', '\n', 0xff, 0xfe})
	m := NewMsg("a", bin, "a", "", "b_9", strings.Repeat("x", 70000), "a", "third")
	p, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(p)
	if err != nil {
		t.Fatal(err)
	}
	if all := got.All("a"); len(all) != 3 || all[0] != bin || all[1] != "" || all[2] != "third" {
		t.Errorf("a = %q", all)
	}
	if len(got.Get("b_9")) != 70000 {
		t.Error("long value")
	}
	if strings.Join(got.Names(), ",") != "a,a,b_9,a" {
		t.Errorf("order %v", got.Names())
	}
	if p, err := Encode(&Msg{}); err != nil || len(p) != 0 {
		t.Errorf("empty: %v %v", p, err)
	}
	if m, err := Decode(nil); err != nil || m.Len() != 0 {
		t.Errorf("Decode(nil): %v %v", m, err)
	}
}

func TestEncodeBadNames(t *testing.T) {
	for _, name := range []string{"", "A", "a-b", "a b", "é", "a\x00", strings.Repeat("a", MaxNameLen+1)} {
		if _, err := Encode(NewMsg(name, "v")); err == nil {
			t.Errorf("Encode accepted name %q", name)
		}
	}
	if _, err := Encode(NewMsg(strings.Repeat("a", MaxNameLen), "v")); err != nil {
		t.Errorf("Encode refused a name of MaxNameLen: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, _ := Encode(NewMsg("name", "value"))
	cases := map[string][]byte{
		"one byte":        {0},
		"zero name":       {0, 0, 0, 0, 0, 0},
		"long name":       {0, 65, 'a'},
		"truncated name":  {0, 4, 'n', 'a'},
		"upper name":      {0, 1, 'N', 0, 0, 0, 0},
		"slash name":      {0, 1, '/', 0, 0, 0, 0},
		"no value length": {0, 1, 'n', 0, 0},
		"value too long":  {0, 1, 'n', 0, 0, 0, 9, 'x'},
		"huge value":      {0, 1, 'n', 0xff, 0xff, 0xff, 0xff},
		"trailing byte":   append(bytes.Clone(good), 0),
	}
	for name, p := range cases {
		if _, err := Decode(p); err == nil {
			t.Errorf("%s: Decode accepted %q", name, p)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range []*Msg{
		NewMsg(),
		NewMsg("a", "b"),
		NewMsg("request", "deliver", "rcpt", "x@y", "rcpt", "z@w", "size", "100"),
		NewMsg("bin", "\x00\xff\r\n"),
	} {
		p, _ := Encode(m)
		f.Add(p)
	}
	f.Add([]byte{0, 1, 'a', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := Decode(p)
		if err != nil {
			return
		}
		// The encoding is canonical: what decodes must encode back to
		// the same bytes.
		q, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode of decoded message: %v", err)
		}
		if !bytes.Equal(p, q) {
			t.Fatalf("round trip changed %q into %q", p, q)
		}
	})
}
