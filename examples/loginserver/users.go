package main

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-lockout/lockout"
)

// defaultHashIterations is OWASP's advice for PBKDF2-HMAC-SHA256 (2023):
// about 0.1 s per check on a current CPU core.
const defaultHashIterations = 600_000

// users is the demo account database: usernames, canonicalised as the
// policy counts them, to password hashes in the usual modular form
// "pbkdf2-sha256$iterations$salt$hash".
type users struct {
	hashes map[string]string
	// dummy is checked for unknown usernames, so that they take as long to
	// refuse as a wrong password.
	dummy string
}

func newUsers(iterations int, accounts []account) (*users, error) {
	u := &users{hashes: make(map[string]string)}
	for _, a := range accounts {
		name, err := lockout.CanonicalizeUsername(a.Name)
		if err != nil {
			return nil, err
		}
		if u.hashes[name], err = hashPassword(a.Password, iterations); err != nil {
			return nil, err
		}
	}
	var err error
	u.dummy, err = hashPassword(rand.Text(), iterations)
	return u, err
}

// verify reports whether password is the password of username. Usernames
// are matched the way the policy counts them, so "Alice" is alice.
func (u *users) verify(username, password string) bool {
	hash, known := "", false
	if name, err := lockout.CanonicalizeUsername(username); err == nil {
		hash, known = u.hashes[name]
	}
	if !known {
		hash = u.dummy
	}
	return checkPassword(hash, password) && known
}

func hashPassword(password string, iterations int) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// checkPassword reports whether password matches hash, comparing in
// constant time.
func checkPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iterations, err := strconv.Atoi(parts[1])
	if err != nil || iterations < 1 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iterations, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}
