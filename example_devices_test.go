package lockout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/go-lockout/lockout"
	"github.com/go-lockout/lockout/backend/memory"
)

// Known devices and repeated wrong passwords: an attacker's failures lock
// alice's username, her own browser still logs in, and her phone retrying
// an old password counts once.
func Example_knownDevices() {
	ctx := context.Background()
	store, _ := memory.New(nil)
	defer store.Close()
	policy, err := lockout.New(store, lockout.Config{
		Rules:        []lockout.Rule{lockout.ByUsername(3)},
		Devices:      &lockout.DeviceConfig{Keys: [][]byte{bytes.Repeat([]byte{7}, lockout.MinSecretLen)}},
		Fingerprints: &lockout.FingerprintConfig{Secret: bytes.Repeat([]byte{9}, lockout.MinSecretLen)},
	})
	if err != nil {
		panic(err)
	}
	defer policy.Close()
	login := func(s lockout.Subject, ok bool) (*lockout.Attempt, error) {
		a, err := policy.Allow(ctx, s)
		if err != nil {
			return nil, err
		}
		if ok {
			return a, a.Success(ctx)
		}
		return a, a.Failure(ctx)
	}

	// Alice logs in from her browser, which gets a device token.
	a, _ := login(lockout.Subject{Username: "alice"}, true)
	token, _, _ := a.DeviceToken()

	// Her phone retries an old password: it counts once.
	for range 10 {
		login(lockout.Subject{Username: "alice", PasswordFingerprint: policy.Fingerprint("old")}, false)
	}
	st, _ := policy.Status(ctx, lockout.Subject{Username: "alice"})
	fmt.Println("counted:", st[0].Attempts)

	// An attacker's guesses lock the username for untrusted clients.
	for i := range 5 {
		login(lockout.Subject{Username: "alice", PasswordFingerprint: policy.Fingerprint(fmt.Sprint("guess", i))}, false)
	}
	_, err = login(lockout.Subject{Username: "alice"}, true)
	fmt.Println("untrusted refused:", errors.Is(err, lockout.ErrRefused))

	// Her browser logs in at once.
	_, err = login(lockout.Subject{Username: "alice", DeviceToken: token}, true)
	fmt.Println("known device:", err)
	// Output:
	// counted: 1
	// untrusted refused: true
	// known device: <nil>
}
