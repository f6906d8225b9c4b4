package config

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

var updateMan = flag.Bool("update-man", false, "rewrite the generated settings section of man/man5/postern.conf.5")

const (
	manPage     = "../../man/man5/postern.conf.5"
	servicesMan = "../../man/man5/services.conf.5"
	manBegin    = ".\\\" BEGIN GENERATED SETTINGS"
	manEnd      = ".\\\" END GENERATED SETTINGS"
)

// roffText escapes text for roff text lines: one sentence a line (the
// roff convention, so that sentence spacing is right), wrapped at 72.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	var lines []string
	for _, sentence := range strings.SplitAfter(s, ". ") {
		for _, l := range wrap(sentence, 72) {
			if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
				l = `\&` + l
			}
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

var kindWords = map[string]string{
	KindString:   "text",
	KindInt:      "number",
	KindBool:     "yes or no",
	KindDuration: "time",
	KindList:     "list",
	KindMaps:     "list of lookup tables",
}

// manSettings renders the settings section of postern.conf(5) from the
// table.
func manSettings() string {
	var b strings.Builder
	b.WriteString(manBegin + " from internal/config/settings.go;\n")
	b.WriteString(".\\\" edit the table, then: go test ./internal/config -run TestManPage -update-man\n")
	for _, g := range groups {
		b.WriteString(".SS " + g + "\n")
		for i := range table {
			p := &table[i]
			if p.Group != g {
				continue
			}
			b.WriteString(".TP\n.B " + p.Name + "\n")
			kind := kindWords[p.Kind]
			switch p.Kind {
			case KindInt:
				if p.max > 0 {
					kind += fmt.Sprintf(" from %d to %d", p.min, p.max)
				}
			case KindDuration:
				if p.max > 0 {
					kind += " from " + fmtSecs(p.min) + " to " + fmtSecs(p.max)
				}
			}
			switch {
			case p.def != nil:
				b.WriteString(roffText("Kind: "+kind+"; default: computed, as follows.") + "\n")
			case p.Default == "":
				b.WriteString(roffText("Kind: "+kind+"; default: empty.") + "\n")
			default:
				b.WriteString(roffText("Kind: "+kind+"; default:") + "\n")
				b.WriteString(".BR \"" + strings.ReplaceAll(p.Default, `\`, `\e`) + "\" .\n")
			}
			b.WriteString(".br\n")
			b.WriteString(roffText(p.Doc) + "\n")
			if p.Detail != "" {
				b.WriteString(roffText(p.Detail) + "\n")
			}
		}
	}
	b.WriteString(manEnd + "\n")
	return b.String()
}

func TestManPage(t *testing.T) {
	data, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	i := strings.Index(page, manBegin)
	j := strings.Index(page, manEnd)
	if i < 0 || j < i {
		t.Fatalf("%s: no generated settings section (%q ... %q)", manPage, manBegin, manEnd)
	}
	j += len(manEnd) + 1
	want := manSettings()
	if page[i:j] != want {
		if *updateMan {
			page = page[:i] + want + page[j:]
			if err := os.WriteFile(manPage, []byte(page), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote %s", manPage)
		} else {
			t.Errorf("%s: settings section differs from the table; run go test ./internal/config -run TestManPage -update-man", manPage)
		}
	}
	for _, s := range Settings() {
		if !strings.Contains(page, "\n.B "+s.Name+"\n") {
			t.Errorf("%s: setting %s missing", manPage, s.Name)
		}
	}
	for _, mt := range []string{"texthash:", "hash:", "static:"} {
		if !strings.Contains(page, mt) {
			t.Errorf("%s: map type %s not described", manPage, mt)
		}
	}
}

func TestServicesManPage(t *testing.T) {
	data, err := os.ReadFile(servicesMan)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	for name := range portNames {
		if !strings.Contains(page, name) {
			t.Errorf("%s: port name %s missing", servicesMan, name)
		}
	}
	for _, w := range []string{"inet", "unix", "pass", "private", "unpriv", "chroot", "wakeup", "maxproc", "-o"} {
		if !strings.Contains(page, w) {
			t.Errorf("%s: %s not described", servicesMan, w)
		}
	}
	// The default services.conf is quoted in the page; keep them equal.
	for _, l := range strings.Split(DefaultServices, "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if !strings.Contains(page, strings.Join(strings.Fields(l), " ")) && !strings.Contains(page, l) {
			t.Errorf("%s: default service line %q missing", servicesMan, l)
		}
	}
}

func TestManLint(t *testing.T) {
	mandoc, err := exec.LookPath("mandoc")
	if err != nil {
		t.Skip("mandoc not installed")
	}
	for _, p := range []string{manPage, servicesMan} {
		var out bytes.Buffer
		cmd := exec.Command(mandoc, "-T", "lint", "-W", "warning", p)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil || out.Len() > 0 {
			t.Errorf("mandoc -T lint %s: %v\n%s", p, err, out.String())
		}
	}
}

// TestReadmeSettings keeps README.md's settings table complete.
func TestReadmeSettings(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings() {
		if !strings.Contains(string(b), "| `"+s.Name+"` |") {
			t.Errorf("README.md: setting %s missing from the settings table", s.Name)
		}
	}
}
