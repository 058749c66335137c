package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-lockout/lockout/backend"
	"github.com/go-lockout/lockout/internal/reccodec"
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

	idLen = 16
)

var journalBucket = []byte("journal")

// errCorruptRecord reports a journal record the store cannot decode.
var errCorruptRecord = errors.New("lockout/bolt: corrupt journal record")

// encodedSize returns an upper bound of the encoding of r.
func encodedSize(r *backend.Record) int {
	return recordHeader - 1 + reccodec.MaxSize(r)
}

// appendRecord appends the encoding of r, appended at stamp, to dst: the
// version and stamp, then reccodec's encoding, which begins with the flags.
func appendRecord(dst []byte, r *backend.Record, stamp int64) []byte {
	dst = append(dst, recordVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(stamp))
	return reccodec.Append(dst, r)
}

// rawRecord is a decoded record whose strings still point into the
// encoding: Records filters on them before it copies anything.
type rawRecord struct {
	stamp int64
	reccodec.Raw
}

// decodeRaw parses v without copying it.
func decodeRaw(v []byte, raw *rawRecord) error {
	if len(v) < recordHeader || v[0] != recordVersion {
		return fmt.Errorf("%w: %d bytes, version %d", errCorruptRecord, len(v), firstByte(v))
	}
	raw.stamp = int64(binary.BigEndian.Uint64(v[1:9]))
	if err := raw.Decode(v[recordHeader-1:]); err != nil {
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

// decodeRecord decodes a record stored under key.
func decodeRecord(key, v []byte) (backend.Record, int64, error) {
	if len(key) != 8 {
		return backend.Record{}, 0, fmt.Errorf("%w: key of %d bytes", errCorruptRecord, len(key))
	}
	var raw rawRecord
	if err := decodeRaw(v, &raw); err != nil {
		return backend.Record{}, 0, err
	}
	return raw.Record(formatID(binary.BigEndian.Uint64(key))), raw.stamp, nil
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
