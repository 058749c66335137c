package bolt

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// rec returns the i-th test record: users u0..u2, IPs by i%5, outcomes
// alternating failure and success.
func rec(i int) backend.Record {
	r := backend.Record{
		ID:       "ignored",
		Time:     time.Unix(1_700_000_000, int64(i)*1_000_003),
		Outcome:  []string{"failure", "success"}[i%2],
		Username: fmt.Sprint("u", i%3),
		IP:       fmt.Sprint("192.0.2.", i%5),
		Reason:   "locked",
		Rule:     "per-user",
		Key:      fmt.Sprint("u=u", i%3),
	}
	if i%4 == 0 {
		r.UserAgent = "curl/8"
		r.Fields = map[string]string{"tenant": fmt.Sprint("t", i), "app": "web"}
		r.Fallback = true
		r.Duration = time.Duration(i) * time.Second
		r.Operator, r.Via = "ops@example", "api"
	}
	return r
}

func TestRecordCodec(t *testing.T) {
	for i, r := range []backend.Record{
		{},
		rec(0),
		rec(1),
		{Time: time.Unix(-1e11, 999_999_999), Duration: -1, Fields: map[string]string{"": ""}},
		{Time: time.Date(3000, 1, 1, 0, 0, 0, 1, time.UTC), Username: strings.Repeat("é", 1000)},
	} {
		v := appendRecord(nil, &r, 42)
		if len(v) > encodedSize(&r) {
			t.Errorf("%d: %d bytes, over the bound %d", i, len(v), encodedSize(&r))
		}
		got, stamp, err := decodeRecord(seqKey(7), v)
		if err != nil || stamp != 42 || got.ID != formatID(7) {
			t.Fatalf("%d: %v, stamp %d, ID %q", i, err, stamp, got.ID)
		}
		got.ID = r.ID
		if !got.Time.Equal(r.Time) {
			t.Errorf("%d: time %v, want %v", i, got.Time, r.Time)
		}
		got.Time = r.Time
		if !reflect.DeepEqual(got, r) {
			t.Errorf("%d:\n got %+v\nwant %+v", i, got, r)
		}
		for cut := range v {
			if _, _, err := decodeRecord(seqKey(7), v[:cut]); err == nil {
				t.Errorf("%d: decoded %d of %d bytes", i, cut, len(v))
			}
		}
	}
	if v := appendRecord(nil, &backend.Record{}, 1); len(v) != 23 {
		t.Errorf("an empty record takes %d bytes, want 23", len(v))
	}
	r := rec(4)
	t.Logf("a record with fields: %d bytes", len(appendRecord(nil, &r, 1)))
}

func FuzzDecodeRecord(f *testing.F) {
	for i := range 5 {
		r := rec(i)
		f.Add(appendRecord(nil, &r, int64(i)))
	}
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 2}) // flags: zero time
	f.Fuzz(func(t *testing.T, v []byte) {
		r, stamp, err := decodeRecord(seqKey(1), v)
		if err != nil {
			if !errors.Is(err, errCorruptRecord) {
				t.Fatalf("error %v does not wrap errCorruptRecord", err)
			}
			return
		}
		// What decodes encodes again to a record that decodes the same.
		v2 := appendRecord(nil, &r, stamp)
		r2, stamp2, err := decodeRecord(seqKey(1), v2)
		if err != nil || stamp2 != stamp || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: %+v (%v)\nthen %+v", r, err, r2)
		}
	})
}
