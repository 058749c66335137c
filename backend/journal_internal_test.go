package backend

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestCutLongest(t *testing.T) {
	for _, tc := range []struct {
		lens []int
		max  int
		want []int // lengths after the cut
	}{
		{[]int{1, 2, 3}, 6, []int{1, 2, 3}},
		{[]int{1, 2, 3}, 5, []int{1, 2, 2}},
		{[]int{5, 100, 1000, 7}, 100, []int{5, 44, 44, 7}},
		{[]int{10, 10, 10}, 0, []int{0, 0, 0}},
		{[]int{0, 0, 50}, 10, []int{0, 0, 10}},
	} {
		vs := make([]*string, len(tc.lens))
		total := 0
		for i, l := range tc.lens {
			v := strings.Repeat("x", l)
			vs[i] = &v
			total += l
		}
		cutLongest(vs, total, tc.max)
		var got []int
		for _, p := range vs {
			got = append(got, len(*p))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("cut %v to %d: %v, want %v", tc.lens, tc.max, got, tc.want)
		}
	}
}

// TestBoundedFieldNames: field names count toward the bound, and when they
// alone pass half of it, the fields with the longest names go (a review:
// names were not counted, so a record of long names was kept whole).
func TestBoundedFieldNames(t *testing.T) {
	size := func(r Record) int {
		n := len(r.Outcome) + len(r.Reason) + len(r.Rule) + len(r.Key) + len(r.Username) + len(r.IP) + len(r.UserAgent) + len(r.Operator) + len(r.Via)
		for k, v := range r.Fields {
			n += len(k) + len(v)
		}
		return n
	}
	long := func(c byte, n int) string { return strings.Repeat(string(c), n) }
	tests := []struct {
		name     string
		fields   map[string]string
		max      int
		wantCut  bool
		wantKept []string // names kept
	}{
		{"short names fit", map[string]string{"tenant": "acme"}, 100, false, []string{"tenant"}},
		{"names count", map[string]string{long('n', 60): "v"}, 64, true, nil},
		{"long names go first", map[string]string{"tenant": "acme", long('a', 700): "x", long('b', 1400): "y"}, 2048, true, []string{long('a', 700), "tenant"}},
		{"a thousand long names", func() map[string]string {
			m := map[string]string{"tenant": "acme"}
			for i := range 1000 {
				m[long(byte('A'+i%26), 100+i)] = long('v', 100)
			}
			return m
		}(), 2048, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Record{Outcome: "failure", IP: "192.0.2.1", Username: "alice", Fields: tt.fields}
			got, cut := r.Bounded(tt.max)
			if cut != tt.wantCut {
				t.Fatalf("cut = %v, want %v", cut, tt.wantCut)
			}
			if n := size(got); n > tt.max {
				t.Errorf("%d bytes after Bounded(%d)", n, tt.max)
			}
			if got.Outcome != "failure" || got.IP != "192.0.2.1" {
				t.Errorf("short values cut: %+v", got)
			}
			if _, ok := got.Fields["tenant"]; !ok && tt.fields["tenant"] != "" {
				t.Errorf("the short name went: %d fields kept", len(got.Fields))
			}
			if tt.wantKept != nil {
				kept := slices.Sorted(maps.Keys(got.Fields))
				if !slices.Equal(kept, tt.wantKept) {
					t.Errorf("kept %d fields, want %d", len(kept), len(tt.wantKept))
				}
			}
			if len(tt.fields) > 0 && cut && len(r.Fields) != len(tt.fields) {
				t.Error("the caller's map changed")
			}
		})
	}
}

// TestBoundedNegative: a negative bound is a bound of zero, not a panic (a
// review).
func TestBoundedNegative(t *testing.T) {
	r, cut := Record{UserAgent: "agent", Fields: map[string]string{"f": "v"}}.Bounded(-20)
	if !cut || r.UserAgent != "" || len(r.Fields) != 0 {
		t.Errorf("Bounded(-20) = %+v, %v; want every value cut", r, cut)
	}
}
