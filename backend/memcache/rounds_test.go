package memcache

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

// TestRounds checks how a batch is split into rounds: one for distinct keys;
// an op on a key after an earlier op on it, in a later round; a read in no
// earlier round than the earlier writes of its hash tag.
func TestRounds(t *testing.T) {
	inc := func(k string) backend.Op { return backend.IncrOp(k, 1, time.Minute) }
	ex := backend.ExistsOp
	tests := []struct {
		ops  []backend.Op
		want string
	}{
		{[]backend.Op{inc("a"), ex("b")}, "[[0 1]]"},
		{[]backend.Op{inc("a"), inc("a"), ex("b")}, "[[0 2] [1]]"},
		{[]backend.Op{inc("x{t}"), inc("x{t}"), ex("y{t}")}, "[[0] [1 2]]"},
		{[]backend.Op{ex("a"), inc("a"), ex("a")}, "[[0] [1] [2]]"},
		{[]backend.Op{ex("y{t}"), inc("x{t}"), inc("x{t}"), backend.DeleteOp("z{t}"), ex("y{t}")}, "[[0 1 3] [2 4]]"},
	}
	for _, tc := range tests {
		keys := make([]string, len(tc.ops))
		for i := range tc.ops {
			keys[i] = mapKey("", tc.ops[i].Key)
		}
		if got := fmt.Sprint(rounds(tc.ops, keys)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.ops, got, tc.want)
		}
	}
}
