package lockout

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// Known devices
//
// A client that logged in successfully can be given a device token
// (Attempt.DeviceToken, or Policy.DeviceToken). An attempt that presents a
// valid token for its username (Subject.DeviceToken) is counted on a key of
// its own, the device rule's (DeviceConfig.Rule), instead of the rules keyed
// by the username: an attacker who fails a thousand times on alice locks
// alice for every untrusted client, and alice's own browser still logs in.
// Rules without the username (the IP rules) apply to devices as to anyone.
// A token that is forged, expired, signed by a key no longer configured or
// issued for another username is ignored: the attempt is untrusted.
//
// A token is base64url (no padding) of
//
//	version (1 byte) | device id (16 random bytes) | expiry (8 bytes, Unix seconds, big-endian) | HMAC-SHA256 (32 bytes)
//
// where the HMAC, with one of DeviceConfig.Keys, covers a domain separator,
// the version, the canonical username (length-prefixed), the id and the
// expiry. The username is not in the token, only in what it signs.

// DefaultDeviceTTL is how long a device token is valid when
// DeviceConfig.TTL is zero.
const DefaultDeviceTTL = 30 * 24 * time.Hour

// DefaultDeviceRule is the name of the device rule when DeviceConfig.Rule
// names none.
const DefaultDeviceRule = "device"

// MinSecretLen is the minimum length of a device key or a fingerprint
// secret, in bytes.
const MinSecretLen = 32

// DeviceConfig turns known devices on (Config.Devices).
type DeviceConfig struct {
	// Keys sign and verify device tokens: Keys[0] signs, every key
	// verifies, so that a key can be rotated: put the new key first, and
	// drop the old one once its tokens have expired (TTL). Each key is at
	// least MinSecretLen random bytes. Required.
	Keys [][]byte
	// TTL is how long a token is valid after it is issued. A token keeps
	// the life it was issued with: lowering TTL shortens the tokens issued
	// after, and does not turn the devices that hold older ones into
	// strangers (rotate Keys to end every token). Default
	// DefaultDeviceTTL.
	TTL time.Duration
	// Rule limits the failures of each known device: its Name (default
	// DefaultDeviceRule), Limit, Window, Sliding, Schedule and
	// HistoryWindow, with the defaults of a Rule. Its Fields and
	// OnSuccess are ignored: the rule is keyed by the username and the
	// device, and a success resets it.
	Rule Rule
}

// ErrNoDevices is returned by the device methods of a policy whose Config
// has no Devices.
var ErrNoDevices = errors.New("lockout: known devices are not configured (Config.Devices)")

// ErrNotSucceeded is returned by Attempt.DeviceToken for an attempt that
// was not reported a success.
var ErrNotSucceeded = errors.New("lockout: the attempt did not succeed")

// deviceField is the field of the device rule that holds the device id.
// Its name is no valid custom field name, so no rule of the caller's can
// be keyed by it.
const deviceField Field = "#device"

const (
	deviceVersion = 1
	deviceIDLen   = 16
	deviceMACLen  = sha256.Size
	deviceRawLen  = 1 + deviceIDLen + 8 + deviceMACLen
	// deviceTokenLen is the length of every device token.
	deviceTokenLen = (deviceRawLen*8 + 5) / 6
	deviceDomain   = "lockout device token\x00"
)

// devices is a validated DeviceConfig.
type devices struct {
	keys [][]byte
	ttl  time.Duration
}

// newDevices validates cfg and returns its keys and the device rule.
func newDevices(cfg *DeviceConfig) (*devices, rule, error) {
	if len(cfg.Keys) == 0 {
		return nil, rule{}, errors.New("devices: no keys")
	}
	d := &devices{ttl: cfg.TTL}
	for i, k := range cfg.Keys {
		if len(k) < MinSecretLen {
			return nil, rule{}, fmt.Errorf("devices: key %d has %d bytes, want at least %d", i, len(k), MinSecretLen)
		}
		d.keys = append(d.keys, append([]byte(nil), k...))
	}
	if d.ttl == 0 {
		d.ttl = DefaultDeviceTTL
	}
	if d.ttl < time.Second {
		return nil, rule{}, fmt.Errorf("devices: TTL %v: want at least 1s", d.ttl)
	}
	r := cfg.Rule
	r.Fields, r.OnSuccess = []Field{Username}, SuccessReset
	if r.Name == "" {
		r.Name = DefaultDeviceRule
	}
	cr, err := r.compile()
	if err != nil {
		return nil, rule{}, fmt.Errorf("devices: %w", err)
	}
	cr.Fields = append(cr.Fields, deviceField)
	cr.device = true
	return d, cr, nil
}

// mac computes the token's signature with key.
func (d *devices) mac(key []byte, username string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(deviceDomain))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(username)))
	m.Write(n[:])
	m.Write([]byte(username))
	m.Write(body)
	return m.Sum(nil)
}

// issue returns a token for the canonical username and the device id (16
// bytes, base64url; a new one when empty), valid until now+ttl.
func (d *devices) issue(username, id string, now time.Time) (string, time.Time, error) {
	raw := make([]byte, 0, deviceRawLen)
	raw = append(raw, deviceVersion)
	if id == "" {
		var b [deviceIDLen]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", time.Time{}, fmt.Errorf("lockout: device id: %w", err)
		}
		raw = append(raw, b[:]...)
	} else {
		b, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(b) != deviceIDLen {
			return "", time.Time{}, fmt.Errorf("%w: device id %q", ErrInvalidSubject, id)
		}
		raw = append(raw, b...)
	}
	exp := now.Add(d.ttl).Truncate(time.Second)
	raw = binary.BigEndian.AppendUint64(raw, uint64(exp.Unix()))
	raw = append(raw, d.mac(d.keys[0], username, raw)...)
	return base64.RawURLEncoding.EncodeToString(raw), exp, nil
}

// verify returns the device id (base64url) of token when it is valid for
// the canonical username at now, and false otherwise.
func (d *devices) verify(username, token string, now time.Time) (string, bool) {
	if len(token) != deviceTokenLen || username == "" {
		return "", false
	}
	var raw [deviceRawLen + 2]byte
	n, err := base64.RawURLEncoding.Strict().Decode(raw[:], []byte(token))
	if err != nil || n != deviceRawLen || raw[0] != deviceVersion {
		return "", false
	}
	body, sig := raw[:1+deviceIDLen+8], raw[1+deviceIDLen+8:deviceRawLen]
	exp := int64(binary.BigEndian.Uint64(body[1+deviceIDLen:]))
	if exp <= now.Unix() {
		return "", false
	}
	ok := false
	for _, k := range d.keys { // every key, so the time says nothing of which
		if hmac.Equal(sig, d.mac(k, username, body)) { // constant time
			ok = true
		}
	}
	if !ok {
		return "", false
	}
	return base64.RawURLEncoding.EncodeToString(body[1 : 1+deviceIDLen]), true
}

// KnowsDevices reports whether the policy has known devices
// (Config.Devices).
func (p *Policy) KnowsDevices() bool { return p.devices != nil }

// DeviceToken returns a device token for username, for a client that just
// logged in, and when it expires: for the given device id (Attempt.Device
// of the login's attempt) when not empty, so that the device keeps its
// counter, and for a new device otherwise. Attempt.DeviceToken does the
// same once the attempt succeeded. Issue a token only to a client that
// gave the right password. It returns ErrNoDevices when Config.Devices is
// not set, and an error wrapping ErrInvalidSubject for a username the
// canonicaliser rejects or a malformed id.
func (p *Policy) DeviceToken(username, device string) (token string, expires time.Time, err error) {
	if p.devices == nil {
		return "", time.Time{}, ErrNoDevices
	}
	c, err := p.canonicalize(Subject{Username: username})
	if err != nil {
		return "", time.Time{}, err
	}
	if c.username == "" {
		return "", time.Time{}, fmt.Errorf("%w: empty username", ErrInvalidSubject)
	}
	return p.devices.issue(c.username, device, time.Now())
}

// Device returns the id of the known device the attempt was counted on
// (its token was valid for the username), or "" for an untrusted client.
func (a *Attempt) Device() string { return a.c.device() }

// DeviceToken returns a device token for the attempt's username, to give
// the client after a successful login, and when it expires: the same
// device id, valid for DeviceConfig.TTL again, when the attempt presented
// a valid token, and a new one otherwise. It returns ErrNotSucceeded
// unless Success was reported (call it after Success returned, as a
// continuation of the same login), ErrNoDevices when Config.Devices is
// not set.
func (a *Attempt) DeviceToken() (token string, expires time.Time, err error) {
	if a.p.devices == nil {
		return "", time.Time{}, ErrNoDevices
	}
	if !a.succeeded || a.c.username == "" {
		return "", time.Time{}, ErrNotSucceeded
	}
	return a.p.devices.issue(a.c.username, a.c.device(), time.Now())
}

// LockDevice locks one known device of username, by its id
// (Attempt.Device, or the d= part of a device rule's key), for d (Forever:
// until unlocked), whatever its counter holds: for a device that was
// stolen, say. The device's attempts are then refused, as any attempt on a
// locked key; UnlockKey or Unlock of the username lifts the lock. The lock
// replaces any lock the device had, shorter or longer, and adds nothing to
// its lockout history. It costs one store call.
func (p *Policy) LockDevice(ctx context.Context, username, device string, d time.Duration) error {
	if p.devices == nil {
		return ErrNoDevices
	}
	if d <= 0 && d != Forever {
		return fmt.Errorf("lockout: lock device for %v: want > 0 or Forever", d)
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(device); err != nil || len(b) != deviceIDLen {
		return fmt.Errorf("%w: device id %q", ErrInvalidSubject, device)
	}
	c, err := p.canonicalize(Subject{Username: username})
	if err != nil {
		return err
	}
	c.x = &extras{device: device}
	a := &Attempt{p: p}
	a.buildKeys(&c)
	ttl := d
	if d == Forever {
		ttl = backend.NoExpiry
	}
	for _, h := range a.rules {
		if !h.r.device {
			continue
		}
		ops := []backend.Op{backend.DeleteOp(a.lockKey(h)), backend.IncrOp(a.lockKey(h), 1, ttl)}
		if _, err := p.exec(ctx, ops, make([]backend.Result, len(ops))); err != nil {
			return err
		}
		p.remember(a.lockKey(h), ttl, true)
		p.lockedOut(ctx, &c, LockoutEvent{Rule: h.r.Name, Key: a.subjectKey(h), Duration: d})
	}
	return nil
}
