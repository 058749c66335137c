package lockout

import (
	"bytes"
	"encoding/base64"
	"testing"
	"time"
)

// FuzzDeviceToken feeds the token parser arbitrary tokens and usernames:
// it never panics, and it accepts only a token the policy issued, for the
// username it was issued to, before it expires.
func FuzzDeviceToken(f *testing.F) {
	d, _, err := newDevices(&DeviceConfig{Keys: [][]byte{bytes.Repeat([]byte{1}, MinSecretLen), bytes.Repeat([]byte{2}, MinSecretLen)}, TTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	issued := map[string]string{} // token: username
	// Fixed ids: the fuzzing workers, each a process of its own, must
	// issue the same tokens.
	for i, u := range []string{"alice", "bob", "x"} {
		id := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{byte(i)}, deviceIDLen))
		tok, _, err := d.issue(u, id, now)
		if err != nil {
			f.Fatal(err)
		}
		issued[tok] = u
		f.Add(u, tok, int64(0))
		f.Add(u, tok[:len(tok)-1]+"A", int64(0))
		f.Add("alice", tok, int64(3600))
	}
	f.Add("alice", "", int64(0))
	f.Add("alice", "AQ", int64(-5))
	f.Fuzz(func(t *testing.T, username, token string, skew int64) {
		at := now.Add(time.Duration(skew) * time.Second)
		id, ok := d.verify(username, token, at)
		if !ok {
			if id != "" {
				t.Errorf("rejected token %q returned id %q", token, id)
			}
			return
		}
		if issued[token] != username {
			t.Fatalf("accepted token %q for %q: not issued to it", token, username)
		}
		if skew >= 3600 || skew < -1 {
			t.Fatalf("accepted token %q at %+ds: outside its life", token, skew)
		}
		if len(id) != 22 {
			t.Fatalf("id %q: want 22 characters", id)
		}
	})
}

// TestDeviceTokenKeepsID: a refreshed token keeps the device's id.
func TestDeviceTokenKeepsID(t *testing.T) {
	d, _, err := newDevices(&DeviceConfig{Keys: [][]byte{bytes.Repeat([]byte{1}, MinSecretLen)}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, _, _ := d.issue("alice", "", now)
	id, ok := d.verify("alice", tok, now)
	if !ok {
		t.Fatal("a fresh token does not verify")
	}
	tok2, _, _ := d.issue("alice", id, now.Add(time.Hour))
	if id2, ok := d.verify("alice", tok2, now.Add(time.Hour)); !ok || id2 != id {
		t.Errorf("refreshed token: id %q, %v; want %q", id2, ok, id)
	}
	if _, _, err := d.issue("alice", "short", now); err == nil {
		t.Error("issue with a malformed id succeeded")
	}
}
