package mime7bit

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// msgGen builds random, well-formed MIME messages with 8-bit content in
// every place the converter handles.
type msgGen struct {
	r *rand.Rand
	n int // boundaries made, to keep them unique
}

var genWords = []string{"hello", "Grüße", "über", "Ελένη", "встреча", "naïve", "=", "a=b", "tab\there",
	"--dash", "日本語", "x", ".", "From", "trailing ", "€100"}

func (g *msgGen) text(lines int) string {
	var b strings.Builder
	for range lines {
		for k := range g.r.IntN(12) {
			if k > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(genWords[g.r.IntN(len(genWords))])
		}
		if g.r.IntN(20) == 0 {
			b.WriteString(strings.Repeat("long", 300))
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

func (g *msgGen) binary() string {
	b := make([]byte, g.r.IntN(3000))
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return string(b)
}

func (g *msgGen) cte() string {
	return []string{"", "7bit", "8bit", "binary", "8BIT"}[g.r.IntN(5)]
}

func (g *msgGen) field(name, value string) string {
	return name + ": " + value + "\r\n"
}

// entity returns a header block and body; top adds message fields.
func (g *msgGen) entity(depth int, top bool) string {
	var h strings.Builder
	if top {
		h.WriteString(g.field("From", `"`+genWords[g.r.IntN(len(genWords))]+`" <a@example.org>`))
		h.WriteString(g.field("Subject", strings.TrimSuffix(g.text(1), "\r\n")))
		if g.r.IntN(2) == 0 {
			h.WriteString(g.field("MIME-Version", "1.0"))
		}
	}
	kind := g.r.IntN(4)
	if depth > 3 {
		kind = g.r.IntN(2)
	}
	if cte := g.cte(); cte != "" {
		h.WriteString(g.field("Content-Transfer-Encoding", cte))
	}
	switch kind {
	case 0:
		if g.r.IntN(3) > 0 {
			h.WriteString(g.field("Content-Type", "text/plain; charset=utf-8"))
		}
		return h.String() + "\r\n" + g.text(g.r.IntN(8))
	case 1:
		h.WriteString(g.field("Content-Type", "application/octet-stream"))
		return h.String() + "\r\n" + g.binary()
	case 2:
		g.n++
		bd := fmt.Sprintf("=_b%d_%d", g.n, g.r.IntN(1000))
		h.WriteString(g.field("Content-Type", `multipart/mixed; boundary="`+bd+`"`))
		var b strings.Builder
		b.WriteString(h.String() + "\r\n")
		if g.r.IntN(2) == 0 {
			b.WriteString("preamble " + g.text(1))
		}
		for range 1 + g.r.IntN(3) {
			b.WriteString("--" + bd + "\r\n" + g.entity(depth+1, false) + "\r\n")
		}
		b.WriteString("--" + bd + "--\r\n")
		if g.r.IntN(2) == 0 {
			b.WriteString(g.text(1))
		}
		return b.String()
	default:
		h.WriteString(g.field("Content-Type", "message/rfc822"))
		return h.String() + "\r\n" + g.entity(depth+1, true)
	}
}

// TestRandomMessages converts random messages and checks that a reader
// decodes the same leaves from the output as from the input.
func TestRandomMessages(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 50
	}
	for seed := range n {
		g := &msgGen{r: rand.New(rand.NewPCG(uint64(seed), 99))}
		in := g.entity(0, true)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			out := convert(t, in)
			sameLeaves(t, in, out)
		})
	}
}
