package lockout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/internal/counting"
)

var (
	deviceKey    = bytes.Repeat([]byte{'k'}, lockout.MinSecretLen)
	oldDeviceKey = bytes.Repeat([]byte{'o'}, lockout.MinSecretLen)
	fpSecret     = bytes.Repeat([]byte{'s'}, lockout.MinSecretLen)
)

// knownDevice logs username in with the right password and returns the
// device token it is given.
func knownDevice(t *testing.T, p *lockout.Policy, s lockout.Subject) string {
	t.Helper()
	a, err := p.Allow(bg, s)
	if err != nil {
		t.Fatalf("logging in: %v", err)
	}
	if _, _, err := a.DeviceToken(); !errors.Is(err, lockout.ErrNotSucceeded) {
		t.Errorf("DeviceToken before Success: %v, want ErrNotSucceeded", err)
	}
	if err := a.Success(bg); err != nil {
		t.Fatal(err)
	}
	tok, exp, err := a.DeviceToken()
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d <= 0 || d > lockout.DefaultDeviceTTL {
		t.Errorf("token expires in %v, want within (0, %v]", d, lockout.DefaultDeviceTTL)
	}
	return tok
}

// TestKnownDeviceNotLockedByAttacker is issue 18's first check: 1,000
// failures on alice from untrusted clients lock her for them; her known
// device logs in at once; the device locks after its own limit.
func TestKnownDeviceNotLockedByAttacker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rules := []lockout.Rule{lockout.ByUsername(5), lockout.ByUsernameAndIP(5), lockout.ByIP(2000)}
		p, _ := newPolicy(t, lockout.Config{Rules: rules, Devices: &lockout.DeviceConfig{
			Keys: [][]byte{deviceKey},
			Rule: lockout.Rule{Limit: 3},
		}})
		home := lockout.Subject{Username: "alice", IP: "198.51.100.7"}
		tok := knownDevice(t, p, home)

		failed, refused := 0, 0
		for i := range 1000 {
			s := lockout.Subject{Username: "alice", IP: fmt.Sprintf("203.0.113.%d", i%250)}
			switch err := attempt(t, p, s, false); {
			case err == nil:
				failed++
			case errors.Is(err, lockout.ErrRefused):
				refused++
			default:
				t.Fatal(err)
			}
		}
		if failed != 5 || refused != 995 {
			t.Errorf("untrusted: %d failures reached the password check, %d refused; want 5 and 995", failed, refused)
		}
		// Untrusted clients stay locked out, from her own address too.
		if err := attempt(t, p, home, true); !errors.Is(err, lockout.ErrRefused) {
			t.Errorf("untrusted client after the attack: %v, want refused", err)
		}
		// Her device logs in at once.
		dev := home
		dev.DeviceToken = tok
		a, err := p.Allow(bg, dev)
		if err != nil {
			t.Fatalf("known device after the attack: %v", err)
		}
		if a.Device() == "" {
			t.Error("the attempt with a valid token is not counted on a device")
		}
		a.Success(bg)
		// The device locks after its own limit (3), and only the device.
		fail(t, p, dev, 3)
		re := refusedFor(t, attempt(t, p, dev, true), lockout.ReasonLocked)
		if re.Rule != lockout.DefaultDeviceRule {
			t.Errorf("the device was refused by rule %q, want %q", re.Rule, lockout.DefaultDeviceRule)
		}
		other := lockout.Subject{Username: "alice", IP: "198.51.100.8"}
		other.DeviceToken = knownDeviceAfter(t, p)
		if err := attempt(t, p, other, true); err != nil {
			t.Errorf("another device of alice: %v, want admitted", err)
		}
	})
}

// knownDeviceAfter returns a new token for alice straight from the policy.
func knownDeviceAfter(t *testing.T, p *lockout.Policy) string {
	t.Helper()
	tok, _, err := p.DeviceToken("Alice", "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func refusedFor(t *testing.T, err error, reason lockout.Reason) *lockout.RefusedError {
	t.Helper()
	var re *lockout.RefusedError
	if !errors.As(err, &re) || re.Reason != reason {
		t.Fatalf("err = %v, want a refusal for %v", err, reason)
	}
	return re
}

// TestUntrustedTokens: forged, expired, other-user and revoked-key tokens
// count as untrusted; a rotated-out key no longer verifies, a key kept in
// the list does.
func TestUntrustedTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rules := []lockout.Rule{lockout.ByUsername(2)}
		cfg := lockout.Config{Rules: rules, Devices: &lockout.DeviceConfig{Keys: [][]byte{oldDeviceKey}, TTL: time.Hour}}
		old, _ := newPolicy(t, cfg)
		oldTok, _, err := old.DeviceToken("alice", "")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Devices = &lockout.DeviceConfig{Keys: [][]byte{deviceKey, oldDeviceKey}, TTL: time.Hour}
		p, _ := newPolicy(t, cfg)
		cfg.Devices = &lockout.DeviceConfig{Keys: [][]byte{deviceKey}, TTL: time.Hour}
		rotated, _ := newPolicy(t, cfg)
		expiring, _, err := p.DeviceToken("alice", "")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour + time.Second) // expiring and oldTok expire
		good, _, _ := p.DeviceToken("alice", "")
		bobs, _, _ := p.DeviceToken("bob", "")
		flip := []byte(good)
		flip[len(flip)-3] ^= 1
		oldTok2, _, _ := old.DeviceToken("alice", "")

		tests := []struct {
			name    string
			p       *lockout.Policy
			token   string
			trusted bool
		}{
			{"valid", p, good, true},
			{"valid, other case of the username", p, good, true},
			{"old key still listed", p, oldTok2, true},
			{"old key rotated out", rotated, oldTok2, false},
			{"expired", p, expiring, false},
			{"expired, old key", p, oldTok, false},
			{"other user", p, bobs, false},
			{"bit flipped", p, string(flip), false},
			{"truncated", p, good[:len(good)-1], false},
			{"empty-ish", p, "x", false},
			{"garbage", p, "not a token at all, not a token at all, not a token at all, not a token at all", false},
		}
		for _, tc := range tests {
			s := lockout.Subject{Username: "alice", DeviceToken: tc.token}
			if tc.name == "valid, other case of the username" {
				s.Username = "ALICE"
			}
			a, err := tc.p.Allow(bg, s)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got := a.Device() != ""; got != tc.trusted {
				t.Errorf("%s: trusted = %v, want %v", tc.name, got, tc.trusted)
			}
			a.Success(bg)
		}
	})
}

// TestShorterTTLKeepsDevices: lowering DeviceConfig.TTL shortens the
// tokens issued after, and leaves the devices that hold older ones known
// until their tokens expire (a review: they became strangers for weeks,
// while an attacker kept alice's username locked).
func TestShorterTTLKeepsDevices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rules := []lockout.Rule{lockout.ByUsername(2)}
		long, _ := newPolicy(t, lockout.Config{Rules: rules, Devices: &lockout.DeviceConfig{Keys: [][]byte{deviceKey}, TTL: 30 * 24 * time.Hour}})
		tok, _, err := long.DeviceToken("alice", "")
		if err != nil {
			t.Fatal(err)
		}
		short, _ := newPolicy(t, lockout.Config{Rules: rules, Devices: &lockout.DeviceConfig{Keys: [][]byte{deviceKey}, TTL: 7 * 24 * time.Hour}})
		start := time.Now()
		for _, tc := range []struct {
			at      time.Duration
			trusted bool
		}{{0, true}, {10 * 24 * time.Hour, true}, {30*24*time.Hour - time.Second, true}, {30*24*time.Hour + time.Second, false}} {
			time.Sleep(tc.at - time.Since(start))
			a, err := short.Allow(bg, lockout.Subject{Username: "alice", DeviceToken: tok})
			if err != nil {
				t.Fatalf("after %v: %v", tc.at, err)
			}
			if got := a.Device() != ""; got != tc.trusted {
				t.Errorf("after %v: trusted = %v, want %v", tc.at, got, tc.trusted)
			}
			a.Success(bg)
		}
	})
}

// TestLockDevice: an operator locks one device; the others and untrusted
// clients go on; Unlock of the username lifts the device's lock.
func TestLockDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)},
			Devices: &lockout.DeviceConfig{Keys: [][]byte{deviceKey}}})
		s := lockout.Subject{Username: "alice"}
		tok := knownDevice(t, p, s)
		dev := lockout.Subject{Username: "alice", DeviceToken: tok}
		a, err := p.Allow(bg, dev)
		if err != nil {
			t.Fatal(err)
		}
		id := a.Device()
		a.Success(bg)
		if err := p.LockDevice(bg, "alice", id, lockout.Forever); err != nil {
			t.Fatal(err)
		}
		re := refusedFor(t, attempt(t, p, dev, true), lockout.ReasonLocked)
		if !re.Forever {
			t.Errorf("refusal %+v, want a lock until unlocked", re)
		}
		if err := attempt(t, p, s, true); err != nil {
			t.Errorf("untrusted client: %v, want admitted", err)
		}
		if err := p.LockDevice(bg, "alice", "not-an-id", time.Minute); !errors.Is(err, lockout.ErrInvalidSubject) {
			t.Errorf("LockDevice of a malformed id: %v, want ErrInvalidSubject", err)
		}
		if err := p.Unlock(bg, lockout.Subject{Username: "alice"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // past the lock cache's staleness bound
		if err := attempt(t, p, dev, true); err != nil {
			t.Errorf("device after Unlock: %v, want admitted", err)
		}
	})
}

func TestDeviceConfigErrors(t *testing.T) {
	short := []byte("short")
	for _, tc := range []struct {
		name string
		cfg  lockout.Config
	}{
		{"no keys", lockout.Config{Devices: &lockout.DeviceConfig{}}},
		{"short key", lockout.Config{Devices: &lockout.DeviceConfig{Keys: [][]byte{deviceKey, short}}}},
		{"name taken", lockout.Config{Devices: &lockout.DeviceConfig{Keys: [][]byte{deviceKey}, Rule: lockout.Rule{Name: "username"}}}},
		{"short secret", lockout.Config{Fingerprints: &lockout.FingerprintConfig{Secret: short}}},
		{"negative remember", lockout.Config{Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret, Remember: -1}}},
	} {
		tc.cfg.Rules = []lockout.Rule{lockout.ByUsername(5)}
		if _, err := lockout.New(newStore(t), tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	p, err := lockout.New(newStore(t), lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, _, err := p.DeviceToken("alice", ""); !errors.Is(err, lockout.ErrNoDevices) {
		t.Errorf("DeviceToken without Devices: %v, want ErrNoDevices", err)
	}
	if fp := p.Fingerprint("pw"); fp != "" {
		t.Errorf("Fingerprint without Fingerprints = %q, want empty", fp)
	}
}

// TestRepeatedWrongPassword is issue 18's second check: the same wrong
// password 20 times counts once; five distinct wrong passwords lock as
// before; and the memory keeps only the last Remember passwords.
func TestRepeatedWrongPassword(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, counter := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5), lockout.ByIP(100)},
			Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret}})
		with := func(pw string) lockout.Subject {
			return lockout.Subject{Username: "alice", IP: "192.0.2.1", PasswordFingerprint: p.Fingerprint(pw)}
		}
		fail(t, p, with("old password"), 20)
		st, err := p.Status(bg, lockout.Subject{Username: "alice", IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Attempts != 1 || st[1].Attempts != 20 {
			t.Errorf("after 20 repeats: %v; want 1 on the username, 20 on the IP", st)
		}
		// Admission stays one call; a repeat's failure gives back in one.
		counter.Reset()
		a, err := p.Allow(bg, with("old password"))
		if err != nil {
			t.Fatal(err)
		}
		if !a.Repeat() {
			t.Error("a repeat is not reported as one")
		}
		if n := counter.Calls(); n != 1 {
			t.Errorf("Allow made %d store calls, want 1", n)
		}
		a.Failure(bg)
		fail(t, p, with("guess 2"), 1)
		fail(t, p, with("guess 3"), 1)
		fail(t, p, with("guess 4"), 1)
		// "old password" is now the fourth-last: counted again, and the
		// fifth failure locks.
		if err := attempt(t, p, with("old password"), false); err != nil {
			t.Fatal(err)
		}
		refusedFor(t, attempt(t, p, with("right"), true), lockout.ReasonLocked)
	})
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)},
			Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret}})
		for i := range 5 {
			s := lockout.Subject{Username: "alice", PasswordFingerprint: p.Fingerprint(fmt.Sprint("guess ", i))}
			if err := attempt(t, p, s, false); err != nil {
				t.Fatalf("distinct guess %d: %v", i+1, err)
			}
		}
		s := lockout.Subject{Username: "alice", PasswordFingerprint: p.Fingerprint("guess 0")}
		refusedFor(t, attempt(t, p, s, true), lockout.ReasonLocked)
	})
}

// TestRepeatGainsNothing holds the attacker to Limit distinct guesses
// however repeats, fingerprints and concurrency are mixed: a repeat that
// takes the last slot does not lock, and a distinct guess after it still
// counts.
func TestRepeatGainsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 3
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(limit)},
			Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret, Remember: 10}})
		fpOf := func(pw string) lockout.Subject {
			return lockout.Subject{Username: "alice", PasswordFingerprint: p.Fingerprint(pw)}
		}
		distinct := map[string]bool{}
		for i := range 200 {
			pw := fmt.Sprint("guess ", i/3) // each password three times in a row
			if i%7 == 3 {
				pw = "guess 0" // and the first one over and over
			}
			a, err := p.Allow(bg, fpOf(pw))
			if errors.Is(err, lockout.ErrRefused) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			distinct[pw] = true
			a.Failure(bg)
		}
		if len(distinct) > limit {
			t.Errorf("%d distinct passwords reached the check, want at most %d: %v", len(distinct), limit, distinct)
		}
		// A malformed fingerprint is an error, never a free guess.
		_, err := p.Allow(bg, lockout.Subject{Username: "bob", PasswordFingerprint: "not one"})
		if !errors.Is(err, lockout.ErrInvalidSubject) {
			t.Errorf("malformed fingerprint: %v, want ErrInvalidSubject", err)
		}
	})
}

// TestResetForgetsPasswords: Reset of a username forgets its wrong
// passwords, so they count again.
func TestResetForgetsPasswords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(5)},
			Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret}})
		s := lockout.Subject{Username: "alice", PasswordFingerprint: p.Fingerprint("pw")}
		fail(t, p, s, 1)
		if err := p.Reset(bg, lockout.Subject{Username: "alice"}); err != nil {
			t.Fatal(err)
		}
		a, err := p.Allow(bg, s)
		if err != nil {
			t.Fatal(err)
		}
		if a.Repeat() {
			t.Error("a password forgotten by Reset is still a repeat")
		}
		a.Failure(bg)
		// Memory expires with the window.
		time.Sleep(lockout.DefaultWindow + time.Second)
		if a, _ := p.Allow(bg, s); a == nil || a.Repeat() {
			t.Error("a password remembered past the window is still a repeat")
		}
	})
	// Passwords from before the reset do not come back as repeats when the
	// sequence climbs again to their numbers (a review: 3 of 3 did).
	synctest.Test(t, func(t *testing.T) {
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(50)},
			Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret}})
		with := func(pw string) lockout.Subject {
			return lockout.Subject{Username: "alice", PasswordFingerprint: p.Fingerprint(pw)}
		}
		for _, pw := range []string{"old 1", "old 2", "old 3"} {
			fail(t, p, with(pw), 1)
		}
		if err := p.Reset(bg, lockout.Subject{Username: "alice"}); err != nil {
			t.Fatal(err)
		}
		for _, pw := range []string{"new 1", "new 2", "new 3"} {
			fail(t, p, with(pw), 1)
		}
		for _, pw := range []string{"old 1", "old 2", "old 3"} {
			a, err := p.Allow(bg, with(pw))
			if err != nil {
				t.Fatal(err)
			}
			if a.Repeat() {
				t.Errorf("%q, from before the reset, is a repeat", pw)
			}
			a.Failure(bg)
		}
	})
}

// TestRetriedPasswordStaysRemembered: a wrong password retried every few
// minutes (a phone with an old password) stays remembered for as long as
// it is retried, and is counted once (a review: counted every Window, it
// locked its owner out after an hour).
func TestRetriedPasswordStaysRemembered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := lockout.ByUsername(5)
		r.Window = lockout.Forever // failures count until a success (django-defender's)
		p, _ := newPolicy(t, lockout.Config{Rules: []lockout.Rule{r},
			Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret}})
		phone := lockout.Subject{Username: "alice", PasswordFingerprint: p.Fingerprint("old password")}
		for i := range 6 * 12 { // every 5 minutes for 6 hours
			if err := attempt(t, p, phone, false); err != nil {
				t.Fatalf("retry %d, after %v: %v", i+1, time.Duration(i)*5*time.Minute, err)
			}
			time.Sleep(5 * time.Minute)
		}
		st, err := p.Status(bg, lockout.Subject{Username: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Attempts > 1 || st[0].Lockouts != 0 {
			t.Errorf("after 72 retries: %v, want at most 1 attempt counted, no lockout", st)
		}
	})
}

// TestMemoryInBackground: on a store whose calls are round trips, the
// failure of a wrong password makes no store call of its own; the memory
// of many goes in one call, in the background, and the policy's own
// decisions see it before it is written. Close writes what is queued.
func TestMemoryInBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := lockout.Config{Rules: []lockout.Rule{lockout.ByUsername(100)}, Logger: discard,
			Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret}}
		store, counter := counting.Wrap(newStore(t))
		p, err := lockout.New(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		subject := func(i int) lockout.Subject {
			return lockout.Subject{Username: fmt.Sprint("user", i), PasswordFingerprint: p.Fingerprint("wrong")}
		}
		for i := range 10 {
			a, err := p.Allow(bg, subject(i))
			if err != nil {
				t.Fatal(err)
			}
			counter.Reset()
			a.Failure(bg)
			if n := counter.Calls(); n != 0 {
				t.Errorf("failure %d made %d store calls, want 0", i, n)
			}
			a, err = p.Allow(bg, subject(i))
			if err != nil {
				t.Fatal(err)
			}
			if !a.Repeat() {
				t.Errorf("user%d: the wrong password just counted is not a repeat", i)
			}
			a.Failure(bg) // a repeat's give-back: one call
		}
		counter.Reset()
		time.Sleep(time.Second) // the writer's linger ends
		synctest.Wait()
		if n := counter.Calls(); n != 1 {
			t.Errorf("the memory of 10 wrong passwords took %d store calls, want 1", n)
		}
		a, err := p.Allow(bg, lockout.Subject{Username: "late", PasswordFingerprint: p.Fingerprint("wrong")})
		if err != nil {
			t.Fatal(err)
		}
		a.Failure(bg)
		p.Close() // writes the queued memory of "late"

		// A second policy on the store sees all of them.
		p2, err := lockout.New(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p2.Close()
		for _, name := range []string{"user0", "user9", "late"} {
			a, err := p2.Allow(bg, lockout.Subject{Username: name, PasswordFingerprint: p2.Fingerprint("wrong")})
			if err != nil {
				t.Fatal(err)
			}
			if !a.Repeat() {
				t.Errorf("%s: a wrong password remembered by another policy is not a repeat", name)
			}
			a.Success(bg)
		}
	})
}

// TestMemoryWriterCallsNoHook: the memory's background writes reach no
// hook nor observer, so hooks may call the policy (Reset, Close) while
// the store fails, without deadlocking it; the lost memory only makes a
// repeat count again.
func TestMemoryWriterCallsNoHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &switchStore{Backend: newStore(t)}
		var p *lockout.Policy
		var errorsHeard atomic.Int64
		p, err := lockout.New(store, lockout.Config{
			Rules:        []lockout.Rule{lockout.ByUsername(100)},
			Logger:       discard,
			Fingerprints: &lockout.FingerprintConfig{Secret: fpSecret},
			Hooks: lockout.Hooks{BackendError: func(ctx context.Context, err error) {
				if errorsHeard.Add(1) == 1 {
					p.Reset(ctx, lockout.Subject{Username: "alice"}) // calls the policy back, once
				}
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		alice := lockout.Subject{Username: "alice", PasswordFingerprint: p.Fingerprint("wrong")}
		if err := attempt(t, p, alice, false); err != nil {
			t.Fatal(err)
		}
		store.mode.Store(down) // the memory's write will fail
		time.Sleep(time.Second)
		synctest.Wait()
		if n := errorsHeard.Load(); n != 0 {
			t.Errorf("the memory's failed write reached BackendError %d times, want 0", n)
		}
		// A decision's own failure reaches the hook, which resets alice.
		if _, err := p.Allow(bg, lockout.Subject{Username: "bob"}); err != nil {
			t.Fatalf("bob during the outage: %v, want admitted by the fallback", err)
		}
		if n := errorsHeard.Load(); n < 1 {
			t.Error("BackendError not heard: the hook's Reset did not run")
		}
		p.Close()
	})
}
