package redis

import (
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-lockout/lockout/backend"
)

// fieldsOf returns the stream entry values appendRecordArgs writes for rec,
// as go-redis hands them back from XREVRANGE.
func fieldsOf(t testing.TB, rec *backend.Record, maxBytes int) map[string]any {
	args := appendRecordArgs(nil, rec, maxBytes)
	if len(args)%2 != 0 {
		t.Fatalf("%d arguments", len(args))
	}
	m := make(map[string]any, len(args)/2)
	for i := 0; i < len(args); i += 2 {
		name := args[i].(string)
		if _, dup := m[name]; dup {
			t.Fatalf("field %q written twice", name)
		}
		m[name] = args[i+1].(string)
	}
	return m
}

// FuzzDecodeRecord checks the record encoding both ways: any record decodes
// back to itself, and the decoder never panics on entries it did not write;
// what it accepts encodes and decodes to the same record.
func FuzzDecodeRecord(f *testing.F) {
	f.Add("t", "1700000000000000000", "f:x", "y", "fb", "1", int64(5), "alice", "")
	f.Add("d", "-1", "f:", "", "u", "", int64(0), "", "f:a")
	f.Add("t", "x", "fb", "2", "d", "", int64(-1), "\x00", "{}")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2, n3, v3 string, nanos int64, s, fname string) {
		// Arbitrary entries: no panic; an accepted one survives a round trip.
		values := map[string]any{n1: v1, n2: v2, n3: v3}
		rec, err := decodeRecord("1-1", values)
		if err == nil {
			back, err := decodeRecord("1-1", fieldsOf(t, &rec, -1))
			if err != nil {
				t.Fatalf("re-decoding %+v: %v", rec, err)
			}
			if !sameRec(back, rec) {
				t.Fatalf("round trip of %+v gave %+v", rec, back)
			}
		}
		// Arbitrary records survive a round trip.
		in := backend.Record{ID: "1-1",
			Time: time.Unix(0, nanos), Outcome: s, Reason: v1, Rule: v2, Key: v3, Username: s + "u",
			IP: n1, UserAgent: n2, Fallback: nanos%2 == 0, Duration: time.Duration(nanos / 3),
			Operator: n3, Via: fname, Fields: map[string]string{fname: s, n1: v1},
		}
		out, err := decodeRecord("1-1", fieldsOf(t, &in, -1))
		if err != nil {
			t.Fatalf("decoding %+v: %v", in, err)
		}
		if !sameRec(out, in) {
			t.Fatalf("round trip of %+v gave %+v", in, out)
		}
		// Cut records keep prefixes of their values, within the bound.
		cut, err := decodeRecord("1-1", fieldsOf(t, &in, 16))
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, p := range [][2]string{
			{cut.Outcome, in.Outcome}, {cut.Username, in.Username}, {cut.IP, in.IP}, {cut.UserAgent, in.UserAgent},
			{cut.Fields[fname], in.Fields[fname]}, {cut.Fields[n1], in.Fields[n1]},
		} {
			if !strings.HasPrefix(p[1], p[0]) {
				t.Fatalf("cut value %q is no prefix of %q", p[0], p[1])
			}
			if utf8.ValidString(p[1]) && !utf8.ValidString(p[0]) {
				t.Fatalf("cut value %q cut within a rune of %q", p[0], p[1])
			}
		}
		for _, v := range []string{cut.Outcome, cut.Reason, cut.Rule, cut.Key, cut.Username, cut.IP, cut.UserAgent, cut.Operator, cut.Via} {
			total += len(v)
		}
		for _, v := range cut.Fields {
			total += len(v)
		}
		if total > 16 {
			t.Fatalf("cut record holds %d bytes of values, want <= 16", total)
		}
	})
}

func sameRec(a, b backend.Record) bool {
	if !a.Time.Equal(b.Time) || !maps.Equal(a.Fields, b.Fields) {
		return false
	}
	a.Time, b.Time, a.Fields, b.Fields = time.Time{}, time.Time{}, nil, nil
	return reflect.DeepEqual(a, b)
}

func TestParseStreamID(t *testing.T) {
	for s, ok := range map[string]bool{
		"0-0": true, "1700000000000-12": true, "18446744073709551615-18446744073709551615": true,
		"18446744073709551616-0": false, "1": false, "1-": false, "-1": false, "a-1": false, "+1-1": false,
		"1-1-1": false, "": false, " 1-1": false,
	} {
		if _, got := parseStreamID(s); got != ok {
			t.Errorf("parseStreamID(%q) ok = %v, want %v", s, got, ok)
		}
	}
}
