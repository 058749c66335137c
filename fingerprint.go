package lockout

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// Repeated wrong passwords
//
// A client that retries the same wrong password (a phone with an old
// password, a user who types it twice) makes no new guess. With
// Config.Fingerprints set, the caller passes a fingerprint of the password
// it is about to verify (Subject.PasswordFingerprint, from
// Policy.Fingerprint), and the policy remembers the fingerprints of the
// username's last wrong passwords. An attempt whose fingerprint is one of
// them is admitted as any other (it holds its reservation while the
// password is checked, so the limit on verifications in flight holds), and
// its failure is not counted on the rules keyed by the username: those
// reservations are given back (but for a counter that may end before the
// give-back lands, on a store that does not guard give-backs: see
// Attempt.giveBack), and such a failure never locks them. Rules
// without the username (IP rules) count it as usual: they bound the work a
// client can cause, whatever it sends.
//
// The memory is two kinds of key per username, beside its rule keys:
//
//	prefix:s:{u=alice}          how many wrong passwords were remembered (a sequence)
//	prefix:f:{u=alice}:<fp>     one per remembered fingerprint, holding its sequence number
//
// Allow reads both, with two Exists operations in its one store call; a
// fingerprint is a repeat when its key exists and no more than Remember-1
// wrong passwords were remembered after it. A failure that is not a repeat
// writes them, with FingerprintConfig.Window as their TTL: in the call the
// failure makes anyway (a sliding window's refresh, the lockout's first
// call), on the memory store at once, and otherwise in the background, in
// batches (memorywriter.go), so that it costs no round trip. So
// "the last N" is exact when failures of a username come one at a time; of
// failures in flight together, each is numbered from the sequence its
// Allow read, and the memory may hold a few more than N. Keys: at most
// one per counted failure within the window, and one sequence per
// username.

// DefaultRemember is how many wrong passwords per username are remembered
// when FingerprintConfig.Remember is zero.
const DefaultRemember = 3

// fingerprintLen is the length of a fingerprint: 12 bytes (96 bits) of
// HMAC-SHA256, base64url.
const fingerprintLen = 16

const fingerprintDomain = "lockout password fingerprint\x00"

// FingerprintConfig turns the memory of wrong passwords on
// (Config.Fingerprints).
type FingerprintConfig struct {
	// Secret keys the fingerprints: at least MinSecretLen random bytes,
	// kept as secret as a password hash's pepper. Changing it forgets
	// every remembered password (they count once more). Required.
	Secret []byte
	// Remember is how many of a username's last wrong passwords are not
	// counted again. Default DefaultRemember.
	Remember int
	// Window is how long a wrong password is remembered after it was last
	// tried (counted, or retried as a repeat). Default: the longest finite
	// Window of the rules keyed by the username, or DefaultWindow.
	Window time.Duration
}

// fingerprints is a validated FingerprintConfig.
type fingerprints struct {
	secret   []byte
	remember int64
	window   time.Duration
}

func newFingerprints(cfg *FingerprintConfig, rules []rule) (*fingerprints, error) {
	if len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("fingerprints: secret of %d bytes, want at least %d", len(cfg.Secret), MinSecretLen)
	}
	f := &fingerprints{secret: append([]byte(nil), cfg.Secret...), remember: int64(cfg.Remember), window: cfg.Window}
	if f.remember == 0 {
		f.remember = DefaultRemember
	}
	if f.remember < 0 {
		return nil, fmt.Errorf("fingerprints: remember %d: want > 0", f.remember)
	}
	if f.window == 0 {
		for i := range rules {
			if rules[i].hasUsername && rules[i].Window > f.window {
				f.window = rules[i].Window
			}
		}
		if f.window == 0 {
			f.window = DefaultWindow
		}
	}
	if f.window < 0 {
		return nil, fmt.Errorf("fingerprints: window %v: want > 0", f.window)
	}
	return f, nil
}

// Fingerprint returns the fingerprint of password to pass as
// Subject.PasswordFingerprint: HMAC-SHA256 keyed with
// FingerprintConfig.Secret, truncated to 96 bits, base64url (16
// characters). Pass the fingerprint of exactly the password the attempt
// verifies. It returns "" when Config.Fingerprints is not set.
func (p *Policy) Fingerprint(password string) string {
	if p.fp == nil {
		return ""
	}
	m := hmac.New(sha256.New, p.fp.secret)
	m.Write([]byte(fingerprintDomain))
	m.Write([]byte(password))
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:fingerprintLen*6/8])
}

// errFingerprint is wrapped by the error for a malformed fingerprint.
var errFingerprint = errors.New("password fingerprint: want the 16 characters Policy.Fingerprint returns")

// validFingerprint reports whether fp has the form Fingerprint returns.
func validFingerprint(fp string) bool {
	if len(fp) != fingerprintLen {
		return false
	}
	for i := 0; i < len(fp); i++ {
		if c := fp[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// extras is what an attempt carries for known devices and the memory of
// wrong passwords (canonical.x): nil when it uses neither.
type extras struct {
	device      string // the id of a valid device token
	fingerprint string
	// repeat is set when the fingerprint is a remembered wrong password;
	// seq is the memory's sequence Allow read.
	repeat bool
	seq    int64
	// fpSeq and fpKey are the memory's keys in the attempt's keys.
	fpSeq, fpKey span
}

func (c *canonical) device() string {
	if c.x == nil {
		return ""
	}
	return c.x.device
}

func (c *canonical) fingerprint() string {
	if c.x == nil {
		return ""
	}
	return c.x.fingerprint
}

// canonicalizeExtras verifies s's device token and checks its password
// fingerprint, for c (whose username is canonical already). A token that
// is not valid for the username is ignored: the client is untrusted.
func (p *Policy) canonicalizeExtras(c *canonical, s *Subject) error {
	var device, fp string
	if s.DeviceToken != "" && p.devices != nil {
		device, _ = p.devices.verify(c.username, s.DeviceToken, time.Now())
	}
	if s.PasswordFingerprint != "" && p.fp != nil {
		if !validFingerprint(s.PasswordFingerprint) {
			return fmt.Errorf("%w: %w", ErrInvalidSubject, errFingerprint)
		}
		fp = s.PasswordFingerprint
	}
	if device != "" || fp != "" {
		c.x = &extras{device: device, fingerprint: fp} // only now on the heap
	}
	return nil
}

// Key kinds of the memory of wrong passwords.
const (
	kindSequence    = 's'
	kindFingerprint = 'f'
)

// appendFingerprintKeys appends the keys of the memory of username's
// wrong passwords to buf, the sequence and fingerprint fp's, and returns
// where they are.
func appendFingerprintKeys(buf []byte, prefix, username, fp string) (_ []byte, seq, key span) {
	start := int32(len(buf))
	buf = append(buf, prefix...)
	buf = append(buf, ':', kindSequence, ':', '{', 'u', '=')
	buf = appendValue(buf, username)
	buf = append(buf, '}')
	seq = span{start, int32(len(buf))}
	buf = append(buf, buf[start:seq.end]...)
	buf[seq.end+int32(len(prefix))+1] = kindFingerprint
	buf = append(buf, ':')
	buf = append(buf, fp...)
	return buf, seq, span{seq.end, int32(len(buf))}
}

// memory returns the attempt's fingerprint state, or nil when it has no
// fingerprint.
func (a *Attempt) memory() *extras {
	if x := a.c.x; x != nil && x.fpKey.end != 0 {
		return x
	}
	return nil
}

// fpOps is the number of operations the fingerprint memory adds to Allow's
// call: 0 without a fingerprint.
func (a *Attempt) fpOps() int {
	if a.memory() == nil {
		return 0
	}
	return 2
}

// appendFingerprintReads sets Allow's reads of the memory in ops.
func (a *Attempt) appendFingerprintReads(ops []backend.Op) {
	if x := a.memory(); x != nil {
		ops[0] = backend.ExistsOp(a.key(x.fpSeq))
		ops[1] = backend.ExistsOp(a.key(x.fpKey))
	}
}

// readFingerprint takes the results of appendFingerprintReads' ops.
func (a *Attempt) readFingerprint(res []backend.Result) {
	x := a.memory()
	if x == nil {
		return
	}
	seq, fp := res[0], res[1]
	if w := a.p.memoryWriter; w != nil {
		// What this process counted a moment ago, not written yet.
		w.adjust(a.key(x.fpSeq), a.key(x.fpKey), &seq, &fp)
	}
	x.seq = seq.Value
	if d := seq.Value - fp.Value; seq.Found && fp.Found && d >= 0 && d < a.p.fp.remember {
		x.repeat = true
	}
}

// appendFingerprintWrites appends what a failure writes: for a new wrong
// password, the next sequence number and the fingerprint holding it; for
// a repeat, a new Window for both, so that a password retried (a phone
// with an old password, every few minutes) stays remembered for as long
// as it is retried, and is counted once.
func (a *Attempt) appendFingerprintWrites(ops []backend.Op) []backend.Op {
	x := a.memory()
	switch {
	case x == nil:
		return ops
	case x.repeat:
		return append(ops, backend.ExpireOp(a.key(x.fpSeq), a.p.fp.window), backend.ExpireOp(a.key(x.fpKey), a.p.fp.window))
	}
	return appendMemoryOps(ops, a.memoryWrite(), a.p.fp.window)
}

// memoryWrite returns what the attempt's failure, not a repeat, leaves in
// the memory of wrong passwords.
func (a *Attempt) memoryWrite() memoryWrite {
	x := a.memory()
	return memoryWrite{seqKey: a.key(x.fpSeq), fpKey: a.key(x.fpKey), seq: x.seq}
}

// Repeat reports whether the attempt's password fingerprint is one of the
// username's last wrong passwords: its failure does not count on the
// rules keyed by the username.
func (a *Attempt) Repeat() bool { return a.c.x != nil && a.c.x.repeat }

// sequenceKey returns the key of the sequence of c's username.
func (p *Policy) sequenceKey(c *canonical) string {
	buf, seq, _ := appendFingerprintKeys(nil, p.prefix, c.username, "")
	return string(buf[seq.start:seq.end])
}

// memoryKey reports whether key is a key of this policy's memory of wrong
// passwords. A key of another policy never is: after the prefix, ':' and
// the kind come ":{", and no kind of any policy is '{'.
func (p *Policy) memoryKey(key string) bool {
	rest, ok := strings.CutPrefix(key, p.prefix+":")
	return ok && len(rest) > 3 && (rest[0] == kindSequence || rest[0] == kindFingerprint) && rest[1:3] == ":{"
}
