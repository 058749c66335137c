package backend_test

import (
	"testing"
	"time"

	"github.com/go-lockout/lockout/backend"
)

func TestOpIsRead(t *testing.T) {
	tests := []struct {
		op   backend.Op
		want bool
	}{
		{backend.ExistsOp("k"), true},
		{backend.IncrOp("k", 0, time.Second), true},
		{backend.IncrOp("k", 1, time.Second), false},
		{backend.IncrOp("k", -1, time.Second), false},
		{backend.ExpireOp("k", time.Second), false},
		{backend.DeleteOp("k"), false},
	}
	for _, tc := range tests {
		if got := tc.op.IsRead(); got != tc.want {
			t.Errorf("%s delta %d: IsRead() = %v, want %v", tc.op.Kind, tc.op.Delta, got, tc.want)
		}
	}
}
