package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// Journal layout, inside the store's bucket:
//
//	"journal" (bucket)
//	    name (bucket): sequence (8 bytes, big endian) -> record
//
// Each journal is a bucket of its own, keyed by the bucket's NextSequence:
// keys sort in append order, and the records of a journal are contiguous
// sequence numbers, since only the oldest are ever deleted (by the sweeper,
// the cap, or to give space back to counters). A record's ID is its
// sequence as 16 lower-case hex digits, which sort as strings too.
//
// A record is
//
//	version (1 byte) | stamp (8 bytes, big endian) | flags (1 byte)
//	| time: Unix seconds (varint), nanoseconds (uvarint)
//	| duration (varint)
//	| Outcome, Reason, Rule, Key, Username, IP, UserAgent, Operator, Via:
//	  each a length (uvarint) and its bytes
//	| fields: count (uvarint), then each key and value as above, in key order
//
// The stamp is when the store appended the record (Unix nanoseconds, by its
// own clock): retention runs from it, not from the record's Time, which the
// engine set. A record with no field and empty strings takes 23 bytes.
const (
	recordVersion = 1
	recordHeader  = 10 // version, stamp, flags

	flagFallback = 1 << 0
	flagZeroTime = 1 << 1
	flagsKnown   = flagFallback | flagZeroTime

	nStrings = 9
	idLen    = 16
)

var journalBucket = []byte("journal")

// errCorruptRecord reports a journal record the store cannot decode.
var errCorruptRecord = errors.New("lockout/bolt: corrupt journal record")

// strings of a record in their encoded order.
func recordStrings(r *backend.Record) [nStrings]*string {
	return [nStrings]*string{&r.Outcome, &r.Reason, &r.Rule, &r.Key, &r.Username, &r.IP, &r.UserAgent, &r.Operator, &r.Via}
}

// Indexes in recordStrings of the fields a Query filters on.
const (
	sOutcome  = 0
	sUsername = 4
	sIP       = 5
)

// encodedSize returns an upper bound of the encoding of r.
func encodedSize(r *backend.Record) int {
	n := recordHeader + 3*binary.MaxVarintLen64 + binary.MaxVarintLen64
	for _, p := range recordStrings(r) {
		n += binary.MaxVarintLen64 + len(*p)
	}
	for k, v := range r.Fields {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return n
}

// appendRecord appends the encoding of r, appended at stamp, to dst.
func appendRecord(dst []byte, r *backend.Record, stamp int64) []byte {
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
	dst = append(dst, recordVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(stamp))
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, sec)
	dst = binary.AppendUvarint(dst, uint64(nsec))
	dst = binary.AppendVarint(dst, int64(r.Duration))
	for _, p := range recordStrings(r) {
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

// rawRecord is a decoded record whose strings still point into the
// encoding: Records filters on them before it copies anything.
type rawRecord struct {
	stamp    int64
	flags    byte
	sec      int64
	nsec     int64
	duration int64
	strs     [nStrings][]byte
	nfields  int
	fields   []byte // the encoded fields
}

// decodeRaw parses v without copying it.
func decodeRaw(v []byte, raw *rawRecord) error {
	if len(v) < recordHeader || v[0] != recordVersion {
		return fmt.Errorf("%w: %d bytes, version %d", errCorruptRecord, len(v), firstByte(v))
	}
	raw.stamp = int64(binary.BigEndian.Uint64(v[1:9]))
	raw.flags = v[9]
	if raw.flags&^flagsKnown != 0 {
		return fmt.Errorf("%w: unknown flags %#x", errCorruptRecord, raw.flags)
	}
	d := decoder{b: v[recordHeader:]}
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
		return fmt.Errorf("%w: %d bytes", errCorruptRecord, len(v))
	}
	return nil
}

func firstByte(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0])
}

// matches reports whether raw matches q's filters.
func (raw *rawRecord) matches(q *backend.Query) bool {
	return (q.Outcome == "" || q.Outcome == string(raw.strs[sOutcome])) &&
		(q.Username == "" || q.Username == string(raw.strs[sUsername])) &&
		(q.IP == "" || q.IP == string(raw.strs[sIP]))
}

// record copies raw into a Record with the given sequence as its ID.
func (raw *rawRecord) record(seq uint64) backend.Record {
	r := backend.Record{
		ID:       formatID(seq),
		Fallback: raw.flags&flagFallback != 0,
		Duration: time.Duration(raw.duration),
	}
	if raw.flags&flagZeroTime == 0 {
		r.Time = time.Unix(raw.sec, raw.nsec)
	}
	for i, p := range recordStrings(&r) {
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

// decodeRecord decodes a record stored under key.
func decodeRecord(key, v []byte) (backend.Record, int64, error) {
	if len(key) != 8 {
		return backend.Record{}, 0, fmt.Errorf("%w: key of %d bytes", errCorruptRecord, len(key))
	}
	var raw rawRecord
	if err := decodeRaw(v, &raw); err != nil {
		return backend.Record{}, 0, err
	}
	return raw.record(binary.BigEndian.Uint64(key)), raw.stamp, nil
}

// decoder reads varints and length-prefixed bytes; after the first error
// it reads nothing more.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorruptRecord
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

// seqKey returns the bucket key of sequence seq.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// formatID returns the ID of sequence seq.
func formatID(seq uint64) string {
	var b [idLen]byte
	const hex = "0123456789abcdef"
	for i := idLen - 1; i >= 0; i-- {
		b[i] = hex[seq&0xf]
		seq >>= 4
	}
	return string(b[:])
}

// parseID parses a record ID given as a cursor.
func parseID(id string) (uint64, error) {
	if len(id) != idLen {
		return 0, fmt.Errorf("lockout/bolt: %w: cursor %q: want %d hex digits", backend.ErrInvalid, truncKey([]byte(id)), idLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return 0, fmt.Errorf("lockout/bolt: %w: cursor %q: want %d lower-case hex digits", backend.ErrInvalid, id, idLen)
		}
	}
	seq, err := strconv.ParseUint(id, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("lockout/bolt: %w: cursor %q: %v", backend.ErrInvalid, id, err)
	}
	return seq, nil
}
