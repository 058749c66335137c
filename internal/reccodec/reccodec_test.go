package reccodec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

var samples = []backend.Record{
	{},
	{
		Time: time.Unix(1_700_000_000, 123_456_789), Outcome: "failure", Reason: "locked", Rule: "per-user",
		Key: "u=alice", Username: "alice", IP: "192.0.2.1", UserAgent: "curl/8",
		Fields: map[string]string{"tenant": "t1", "app": "web"}, Fallback: true, Duration: time.Minute,
		Operator: "ops@example", Via: "api",
	},
	{Time: time.Unix(-1e11, 999_999_999), Duration: -1, Fields: map[string]string{"": ""}},
	{Time: time.Date(3000, 1, 1, 0, 0, 0, 1, time.UTC), Username: strings.Repeat("é", 1000), IP: "\x00\xff{}"},
}

func TestRoundTrip(t *testing.T) {
	for i, r := range samples {
		b := Append(nil, &r)
		if len(b) > MaxSize(&r) {
			t.Errorf("%d: %d bytes, over MaxSize %d", i, len(b), MaxSize(&r))
		}
		got, err := Decode(b, "id")
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if got.ID != "id" || !got.Time.Equal(r.Time) {
			t.Errorf("%d: ID %q, time %v, want id, %v", i, got.ID, got.Time, r.Time)
		}
		got.ID, got.Time = r.ID, r.Time
		if !reflect.DeepEqual(got, r) {
			t.Errorf("%d:\n got %+v\nwant %+v", i, got, r)
		}
		for cut := range b {
			if _, err := Decode(b[:cut], ""); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%d: %d of %d bytes: error %v, want ErrCorrupt", i, cut, len(b), err)
			}
		}
		if _, err := Decode(append(b, 0), ""); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%d: a byte too many: error %v, want ErrCorrupt", i, err)
		}
	}
	if b := Append(nil, &backend.Record{}); len(b) != 14 {
		t.Errorf("an empty record takes %d bytes, want 14", len(b))
	}
}

func TestMatches(t *testing.T) {
	r := samples[1]
	var raw Raw
	if err := raw.Decode(Append(nil, &r)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    backend.Query
		want bool
	}{
		{backend.Query{}, true},
		{backend.Query{Username: "alice"}, true},
		{backend.Query{Username: "bob"}, false},
		{backend.Query{IP: "192.0.2.1", Outcome: "failure"}, true},
		{backend.Query{IP: "192.0.2.1", Outcome: "success"}, false},
		{backend.Query{IP: "192.0.2.2"}, false},
	} {
		if got := raw.Matches(&tc.q); got != tc.want || tc.q.Match(&r) != tc.want {
			t.Errorf("%+v: Matches %v, Query.Match %v, want %v", tc.q, got, tc.q.Match(&r), tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, r := range samples {
		f.Add(Append(nil, &r))
	}
	f.Add([]byte{})
	f.Add([]byte{flagZeroTime, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b, "x")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// What decodes encodes again to a record that decodes the same
		// (varints may have been written longer than needed).
		r2, err := Decode(Append(nil, &r), "x")
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: %+v\nthen %+v (%v)", r, r2, err)
		}
	})
}

// TestBound: an encoding whose values exceed the bound comes back as the
// encoding of the record Bounded cuts; one that fits, or no bound, comes
// back as it was; a broken encoding is an error.
func TestBound(t *testing.T) {
	long := backend.Record{Outcome: "refused", IP: "192.0.2.1", UserAgent: strings.Repeat("a", 5000)}
	short := backend.Record{Outcome: "failure", Username: "alice"}
	cut, _ := long.Bounded(1024)
	for _, tc := range []struct {
		name string
		r    backend.Record
		max  int
		want backend.Record
	}{
		{"cut", long, 1024, cut},
		{"fits", short, 1024, short},
		{"no bound", long, -1, long},
		{"zero: no bound", long, 0, long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := Append(nil, &tc.r)
			got, err := Bound(enc, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Decode(got, "")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r, tc.want) {
				t.Errorf("Bound(%d) decodes to a record with a %d-byte user agent, want %d", tc.max, len(r.UserAgent), len(tc.want.UserAgent))
			}
		})
	}
	if _, err := Bound([]byte(strings.Repeat("\xff", 2000)), 1024); err == nil {
		t.Error("Bound of a broken encoding: no error")
	}
}
