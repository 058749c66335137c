package backend

import (
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
