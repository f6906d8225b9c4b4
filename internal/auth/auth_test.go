package auth

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"
)

func newAuth(t *testing.T, cfg Config) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(loadFixture(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoginOutcomes(t *testing.T) {
	a := newAuth(t, Config{FailureLimit: 100, FailureWindow: time.Minute})
	ctx := context.Background()
	tests := []struct {
		user, pw, addr string
		want           Outcome
		why            string
	}{
		{"alice@example.org", "alice-secret", "192.0.2.1", OK, "password ok"},
		{"Alice@EXAMPLE.org", "alice-secret", "", OK, "password ok"},
		{"bob@example.org", "bob-secret", "2001:db8::5", OK, "password ok"},
		{"carol", "carol-secret", "192.0.2.200", OK, "password ok"},
		{"carol", "carol-secret", "[IPv6:2001:db8::7]", OK, "password ok"},
		{"carol", "carol-secret", "", OK, "password ok"},
		{"dave@example.net", "dave-secret", "192.0.2.1", OK, "password ok"},
		{"grace@example.net", "bob-secret", "192.0.2.1", OK, "password ok"},
		{"henry@example.com", "bob-secret", "192.0.2.1", OK, "password ok"},
		{"alice@example.org", "alice-secreT", "192.0.2.1", Fail, "password mismatch"},
		{"alice@example.org", "", "192.0.2.1", Fail, "empty password"},
		{"alice@example.org", strings.Repeat("x", MaxPasswordLen+1), "192.0.2.1", Fail, "password too long"},
		{"nobody@example.org", "alice-secret", "192.0.2.1", Fail, "unknown user"},
		{"bad user", "x", "192.0.2.1", Fail, "bad user name"},
		{"carol", "carol-secret", "198.51.100.1", Fail, "allow_nets"},
		{"carol", "carol-secret", "not-an-address", Fail, "allow_nets"},
		{"erin@example.net", "erin-secret", "192.0.2.1", Fail, "nologin: moved"},
		{"frank@example.net", "anything", "192.0.2.1", Fail, "no password"},
	}
	for _, tt := range tests {
		r := a.Login(ctx, tt.user, tt.pw, tt.addr)
		if r.Outcome != tt.want || !strings.Contains(r.Why, tt.why) {
			t.Errorf("Login(%q, %q) = %v %q, want %v %q", tt.user, tt.addr, r.Outcome, r.Why, tt.want, tt.why)
		}
		if r.Outcome == OK {
			if u, _ := a.Lookup(tt.user); r.User != u {
				t.Errorf("Login(%q).User = %v", tt.user, r.User)
			}
		} else if r.User != nil {
			t.Errorf("failed Login(%q) returned a user", tt.user)
		}
		if tt.pw != "" && strings.Contains(r.Why, tt.pw) {
			t.Errorf("Why %q holds the password", r.Why)
		}
	}
}

func TestLoginRateLimit(t *testing.T) {
	c := newClock()
	a := newAuth(t, Config{FailureLimit: 3, FailureWindow: time.Minute, Now: c.now})
	ctx := context.Background()
	for range 3 {
		if r := a.Login(ctx, "alice@example.org", "wrong", "192.0.2.1"); r.Outcome != Fail {
			t.Fatalf("failure: %v %s", r.Outcome, r.Why)
		}
	}
	// The right password now gets a temporary failure, from anywhere.
	r := a.Login(ctx, "alice@example.org", "alice-secret", "198.51.100.9")
	if r.Outcome != TempFail || !strings.Contains(r.Why, "user alice@example.org") {
		t.Fatalf("blocked user: %v %q", r.Outcome, r.Why)
	}
	// And the client too, for any user.
	r = a.Login(ctx, "bob@example.org", "bob-secret", "192.0.2.1")
	if r.Outcome != TempFail || !strings.Contains(r.Why, "ip 192.0.2.1") {
		t.Fatalf("blocked client: %v %q", r.Outcome, r.Why)
	}
	if r := a.Login(ctx, "bob@example.org", "bob-secret", "198.51.100.9"); r.Outcome != OK {
		t.Fatalf("unrelated login: %v %q", r.Outcome, r.Why)
	}
	c.add(time.Minute)
	if r := a.Login(ctx, "alice@example.org", "alice-secret", "192.0.2.1"); r.Outcome != OK {
		t.Fatalf("after the window: %v %q", r.Outcome, r.Why)
	}

	// IPv6 clients are counted per /64; unknown users are counted too.
	for i := range 3 {
		addr := "2001:db8:1:2::" + string(rune('a'+i))
		a.Login(ctx, "ghost"+string(rune('a'+i))+"@example.org", "x", addr)
	}
	if r := a.Login(ctx, "bob@example.org", "bob-secret", "2001:db8:1:2:ffff::1"); r.Outcome != TempFail || !strings.Contains(r.Why, "net 2001:db8:1:2::/64") {
		t.Fatalf("IPv6 /64: %v %q", r.Outcome, r.Why)
	}
	if r := a.Login(ctx, "bob@example.org", "bob-secret", "2001:db8:1:3::1"); r.Outcome != OK {
		t.Fatalf("neighbouring /64: %v %q", r.Outcome, r.Why)
	}

	// A success resets the user's count, not the client's.
	b := newAuth(t, Config{FailureLimit: 3, FailureWindow: time.Minute, Now: c.now})
	b.Login(ctx, "bob@example.org", "wrong", "192.0.2.50")
	b.Login(ctx, "bob@example.org", "wrong", "192.0.2.51")
	b.Login(ctx, "bob@example.org", "bob-secret", "192.0.2.52")
	b.Login(ctx, "bob@example.org", "wrong", "192.0.2.53")
	b.Login(ctx, "bob@example.org", "wrong", "192.0.2.54")
	if b.Limiter().Blocked("user:bob@example.org") {
		t.Fatal("success did not reset the user's failures")
	}
	b.Login(ctx, "carol", "wrong", "192.0.2.60")
	b.Login(ctx, "carol", "wrong", "192.0.2.60")
	b.Login(ctx, "carol", "carol-secret", "192.0.2.60")
	b.Login(ctx, "bob@example.org", "wrong", "192.0.2.60")
	if !b.Limiter().Blocked("ip:192.0.2.60") {
		t.Fatal("success reset the client's failures")
	}
}

func TestLoginDelay(t *testing.T) {
	a := newAuth(t, Config{FailureDelay: 150 * time.Millisecond, FailureLimit: 2, FailureWindow: time.Minute})
	ctx := context.Background()
	start := time.Now()
	a.Login(ctx, "bob@example.org", "wrong", "192.0.2.1")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("failure answered after %v", d)
	}
	start = time.Now()
	a.Login(ctx, "alice@example.org", "wrong", "192.0.2.1")
	a.Login(ctx, "alice@example.org", "alice-secret", "192.0.2.1") // blocked
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("failure and refusal answered after %v", d)
	}
	// A quit cuts the delay short.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	start = time.Now()
	a.Login(cctx, "bob@example.org", "wrong", "198.51.100.1")
	if d := time.Since(start); d > 140*time.Millisecond {
		t.Errorf("cancelled login took %v", d)
	}
}

func TestLoginWaitsForAHashSlot(t *testing.T) {
	a := newAuth(t, Config{MaxConcurrent: 1, FailureLimit: 10, FailureWindow: time.Minute})
	a.sem <- struct{}{} // the only slot is busy
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r := a.Login(ctx, "bob@example.org", "bob-secret", "192.0.2.1")
	if r.Outcome != TempFail || r.Why != "shutting down" {
		t.Fatalf("got %v %q", r.Outcome, r.Why)
	}
	<-a.sem
	// A cancelled wait is not a failure.
	if a.Limiter().Len() != 0 {
		t.Fatalf("limiter has %d entries", a.Limiter().Len())
	}
	if r := a.Login(context.Background(), "bob@example.org", "bob-secret", "192.0.2.1"); r.Outcome != OK {
		t.Fatalf("after the slot was freed: %v %q", r.Outcome, r.Why)
	}
}

// TestUnknownUserTiming checks that a login of an unknown user costs a
// hash like a real one. Generous bounds: the machine may be busy.
func TestUnknownUserTiming(t *testing.T) {
	h, err := hashBcrypt([]byte("s3cret"), 9)
	if err != nil {
		t.Fatal(err)
	}
	db, err := Parse("t", []byte("real@example.org:{BLF-CRYPT}"+h+"\nnopw@example.org:\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(db, Config{FailureLimit: 1000, FailureWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if a.dummy.costKey() != "BLF-CRYPT/9" {
		t.Fatalf("dummy %s", a.dummy.costKey())
	}
	median := func(user string) time.Duration {
		var ds []time.Duration
		for range 5 {
			s := time.Now()
			a.Login(context.Background(), user, "wrong", "")
			ds = append(ds, time.Since(s))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[2]
	}
	real, unknown, nopw := median("real@example.org"), median("ghost@example.org"), median("nopw@example.org")
	t.Logf("real %v, unknown %v, no password %v", real, unknown, nopw)
	if unknown < real/3 || nopw < real/3 {
		t.Errorf("unknown user %v or user without password %v much faster than a real one %v", unknown, nopw, real)
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":              "ip:192.0.2.1",
		"::ffff:192.0.2.1":       "ip:192.0.2.1",
		"[192.0.2.1]":            "ip:192.0.2.1",
		"2001:db8:1:2:3:4:5:6":   "net:2001:db8:1:2::/64",
		"[IPv6:2001:DB8:1:2::9]": "net:2001:db8:1:2::/64",
		"fe80::1%eth0":           "net:fe80::/64",
		"":                       "",
		"Unknown":                "ip:unknown",
		strings.Repeat("z", 100): "ip:" + strings.Repeat("z", 64),
	} {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEmptyDatabase(t *testing.T) {
	a, err := NewAuthenticator(newDB(), Config{FailureLimit: 10, FailureWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if a.dummy.scheme != SchemeArgon2ID {
		t.Fatalf("dummy %s", a.dummy.costKey())
	}
	if r := a.Login(context.Background(), "a@b", "c", "192.0.2.1"); r.Outcome != Fail {
		t.Fatalf("got %v", r.Outcome)
	}
	if _, ok := a.Lookup("a@b"); ok {
		t.Fatal("lookup in an empty database")
	}
}
