// Package reccodec encodes journal records (backend.Record) in a compact
// binary form, for the stores that keep them as bytes: bbolt on disk, the
// memory store in chunks the garbage collector need not scan, Redis in
// stream entries. It holds no ID and no store time: each store keeps those
// beside the encoding, in its own way.
//
// An encoding is
//
//	flags (1 byte)
//	| time: Unix seconds (varint), nanoseconds (uvarint)
//	| duration (varint)
//	| Outcome, Reason, Rule, Key, Username, IP, UserAgent, Operator, Via:
//	  each a length (uvarint) and its bytes
//	| fields: count (uvarint), then each key and value as above, in key order
//
// A record with no field and empty strings takes 14 bytes.
package reccodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// Flags of an encoding.
const (
	flagFallback = 1 << 0
	flagZeroTime = 1 << 1
	flagsKnown   = flagFallback | flagZeroTime
)

// nStrings is the number of string values of a record.
const nStrings = 9

// Indexes in strings of the values a Query filters on.
const (
	sOutcome  = 0
	sUsername = 4
	sIP       = 5
)

// ErrCorrupt reports bytes that are not an encoding.
var ErrCorrupt = errors.New("corrupt journal record")

// stringValues returns the string values of r in their encoded order.
func stringValues(r *backend.Record) [nStrings]*string {
	return [nStrings]*string{&r.Outcome, &r.Reason, &r.Rule, &r.Key, &r.Username, &r.IP, &r.UserAgent, &r.Operator, &r.Via}
}

// MaxSize returns an upper bound of the length of r's encoding.
func MaxSize(r *backend.Record) int {
	n := 1 + 4*binary.MaxVarintLen64
	for _, p := range stringValues(r) {
		n += binary.MaxVarintLen64 + len(*p)
	}
	for k, v := range r.Fields {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// Append appends the encoding of r (all but its ID) to dst.
func Append(dst []byte, r *backend.Record) []byte {
	var flags byte
	if r.Fallback {
		flags |= flagFallback
	}
	var sec, nsec int64
	if r.Time.IsZero() {
		flags |= flagZeroTime
	} else {
		sec, nsec = r.Time.Unix(), int64(r.Time.Nanosecond())
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, sec)
	dst = binary.AppendUvarint(dst, uint64(nsec))
	dst = binary.AppendVarint(dst, int64(r.Duration))
	for _, p := range stringValues(r) {
		dst = appendString(dst, *p)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Fields)))
	if len(r.Fields) > 0 {
		var keys [16]string
		ks := keys[:0]
		for k := range r.Fields {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		for _, k := range ks {
			dst = appendString(dst, k)
			dst = appendString(dst, r.Fields[k])
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// Raw is a decoded record whose values still point into the encoding: a
// store filters on them before it copies anything.
type Raw struct {
	flags    byte
	sec      int64
	nsec     int64
	duration int64
	strs     [nStrings][]byte
	nfields  int
	fields   []byte // the encoded fields
}

// Decode parses the encoding b into raw, without copying it. Every byte of
// b must belong to the encoding.
func (raw *Raw) Decode(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrCorrupt)
	}
	raw.flags = b[0]
	if raw.flags&^flagsKnown != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, raw.flags)
	}
	d := decoder{b: b[1:]}
	raw.sec = d.varint()
	nsec := d.uvarint()
	raw.duration = d.varint()
	if nsec >= 1e9 {
		d.fail()
	}
	raw.nsec = int64(nsec)
	if raw.flags&flagZeroTime != 0 && (raw.sec != 0 || raw.nsec != 0) {
		d.fail()
	}
	for i := range raw.strs {
		raw.strs[i] = d.bytes()
	}
	n := d.uvarint()
	if n > uint64(len(d.b))/2 { // every field takes two bytes at least
		d.fail()
	}
	raw.nfields = int(n)
	raw.fields = d.b
	var prev []byte
	for i := 0; i < raw.nfields && d.err == nil; i++ {
		k := d.bytes()
		if i > 0 && string(k) <= string(prev) {
			d.fail() // keys are stored in order, once each
		}
		prev = k
		d.bytes()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	return nil
}

// Matches reports whether raw matches q's filters.
func (raw *Raw) Matches(q *backend.Query) bool {
	return (q.Outcome == "" || q.Outcome == string(raw.strs[sOutcome])) &&
		(q.Username == "" || q.Username == string(raw.strs[sUsername])) &&
		(q.IP == "" || q.IP == string(raw.strs[sIP]))
}

// Record copies raw into a Record with the given ID.
func (raw *Raw) Record(id string) backend.Record {
	r := backend.Record{
		ID:       id,
		Fallback: raw.flags&flagFallback != 0,
		Duration: time.Duration(raw.duration),
	}
	if raw.flags&flagZeroTime == 0 {
		r.Time = time.Unix(raw.sec, raw.nsec)
	}
	for i, p := range stringValues(&r) {
		if len(raw.strs[i]) > 0 {
			*p = string(raw.strs[i])
		}
	}
	if raw.nfields > 0 {
		r.Fields = make(map[string]string, raw.nfields)
		d := decoder{b: raw.fields}
		for range raw.nfields {
			k := d.bytes()
			r.Fields[string(k)] = string(d.bytes())
		}
	}
	return r
}

// Decode decodes the encoding b into a Record with the given ID.
func Decode(b []byte, id string) (backend.Record, error) {
	var raw Raw
	if err := raw.Decode(b); err != nil {
		return backend.Record{}, err
	}
	return raw.Record(id), nil
}

// Bound returns the encoding enc with its record's string values cut to
// maxBytes (backend.Record.Bounded), or enc itself when they fit, as they
// do whenever enc is no longer than maxBytes. Zero or a negative maxBytes
// is no bound.
func Bound(enc []byte, maxBytes int) ([]byte, error) {
	if maxBytes <= 0 || len(enc) <= maxBytes {
		return enc, nil
	}
	r, err := Decode(enc, "")
	if err != nil {
		return nil, err
	}
	if cut, ok := r.Bounded(maxBytes); ok {
		return Append(nil, &cut), nil
	}
	return enc, nil
}

// decoder reads varints and length-prefixed bytes; after the first error
// it reads nothing more.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = ErrCorrupt
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
