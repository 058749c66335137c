package reccodec

import (
	"context"
	"encoding/binary"
	"iter"

	"github.com/go-lockout/lockout/backend"
)

// Batch is a run of encoded records, each a length (uvarint) and its
// encoding, back to back in one buffer: what the engine's journal queues
// and hands to a store, without a backend.Record per record on the heap.
// Its zero value is empty.
type Batch struct {
	buf []byte
	n   int
}

// Add appends the encoding of r.
func (b *Batch) Add(r *backend.Record) {
	var tmp [256]byte
	enc := Append(tmp[:0], r)
	b.AddEncoded(enc)
}

// AddEncoded appends an encoding made by Append.
func (b *Batch) AddEncoded(enc []byte) {
	b.buf = binary.AppendUvarint(b.buf, uint64(len(enc)))
	b.buf = append(b.buf, enc...)
	b.n++
}

// Len returns the number of records in b.
func (b *Batch) Len() int { return b.n }

// Size returns the bytes b holds.
func (b *Batch) Size() int { return len(b.buf) }

// Reset empties b, keeping its buffer.
func (b *Batch) Reset() { b.buf, b.n = b.buf[:0], 0 }

// All yields each record's encoding, in order. The slices alias b's
// buffer: they are valid until b changes.
func (b *Batch) All() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for enc, off, ok := b.Next(0); ok; enc, off, ok = b.Next(off) {
			if !yield(enc) {
				return
			}
		}
	}
}

// Records decodes every record of b.
func (b *Batch) Records() ([]backend.Record, error) {
	recs := make([]backend.Record, 0, b.n)
	for enc := range b.All() {
		r, err := Decode(enc, "")
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Appender is implemented by the journals of this module's stores that
// take a Batch as it is, without a backend.Record per record: the memory
// store copies the encodings, bbolt and Redis store them as they are. The
// engine uses it when its journal's store has it, and
// backend.Journal.Append otherwise. It appends like Append does, with the
// same contract.
type Appender interface {
	AppendBatch(ctx context.Context, name string, b *Batch) error
}

// Next returns the encoding of the record at offset off of b's buffer
// (0 for the first) and the offset of the one after it; ok is false at
// the end.
func (b *Batch) Next(off int) (enc []byte, next int, ok bool) {
	if off >= len(b.buf) {
		return nil, off, false
	}
	n, k := binary.Uvarint(b.buf[off:])
	if k <= 0 || n > uint64(len(b.buf)-off-k) {
		return nil, len(b.buf), false // cannot happen: Add wrote it
	}
	start := off + k
	return b.buf[start : start+int(n)], start + int(n), true
}
