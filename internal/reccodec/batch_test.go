package reccodec

import (
	"reflect"
	"strings"
	"testing"

	"github.com/go-lockout/lockout/backend"
)

func TestBatch(t *testing.T) {
	var b Batch
	if b.Len() != 0 || b.Size() != 0 {
		t.Fatalf("zero Batch: %d records, %d bytes", b.Len(), b.Size())
	}
	for round := range 2 { // the second after Reset
		for i := range samples {
			b.Add(&samples[i])
		}
		long := samples[1]
		long.UserAgent = strings.Repeat("x", 1000) // longer than Add's stack buffer
		b.Add(&long)
		want := append(append([]backend.Record{}, samples...), long)
		recs, err := b.Records()
		if err != nil || len(recs) != len(want) || b.Len() != len(want) {
			t.Fatalf("round %d: %d records (Len %d), %v; want %d", round, len(recs), b.Len(), err, len(want))
		}
		for i, r := range recs {
			w := want[i]
			if !r.Time.Equal(w.Time) {
				t.Errorf("round %d, record %d: time %v, want %v", round, i, r.Time, w.Time)
			}
			r.Time, r.ID = w.Time, w.ID
			if !reflect.DeepEqual(r, w) {
				t.Errorf("round %d, record %d:\n got %+v\nwant %+v", round, i, r, w)
			}
		}
		n := 0
		for enc := range b.All() {
			if n == 2 {
				break // All stops when asked
			}
			if _, err := Decode(enc, ""); err != nil {
				t.Fatal(err)
			}
			n++
		}
		b.Reset()
		if b.Len() != 0 || b.Size() != 0 {
			t.Fatalf("after Reset: %d records, %d bytes", b.Len(), b.Size())
		}
		if _, _, ok := b.Next(0); ok {
			t.Fatal("Next on an empty batch")
		}
	}
}
