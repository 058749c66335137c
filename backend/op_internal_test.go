package backend

import (
	"errors"
	"testing"
	"time"
)

// TestValidAgreesWithValidate checks ValidateBatch's fast check against
// Validate over every kind, with deltas and TTLs on each side of the rules.
func TestValidAgreesWithValidate(t *testing.T) {
	for _, kind := range []Kind{Incr, Expire, Exists, Delete, Kind(200)} {
		for _, key := range []string{"", "k"} {
			for _, delta := range []int64{-1, 0, 1} {
				for _, ttl := range []time.Duration{NoExpiry, -2, 0, 1, time.Hour} {
					op := Op{Kind: kind, Key: key, Delta: delta, TTL: ttl}
					err := op.Validate()
					if op.valid() != (err == nil) {
						t.Errorf("%+v: valid() = %v, Validate() = %v", op, op.valid(), err)
					}
					berr := ValidateBatch([]Op{op}, make([]Result, 1))
					if (berr == nil) != (err == nil) || (berr != nil && !errors.Is(berr, ErrInvalid)) {
						t.Errorf("%+v: ValidateBatch = %v, Validate = %v", op, berr, err)
					}
				}
			}
		}
	}
}
