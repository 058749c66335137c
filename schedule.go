package lockout

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Forever is the lockout duration that never ends. A schedule only returns it
// when it was named explicitly, as an entry of [List].
const Forever time.Duration = -1

// A Schedule picks how long a key is locked out for its n-th lockout within
// the rule's history window (n >= 1). It returns a positive duration, or
// [Forever].
//
// [Fixed], [List] and [Exponential] cover the common cases; any type with
// this method can be used.
type Schedule interface {
	// Lockout returns the length of a key's n-th lockout within its
	// history window (n >= 1); Forever: until unlocked.
	Lockout(n int) time.Duration
}

// validator is implemented by schedules that can check themselves when a
// Policy is built.
type validator interface{ validate() error }

// Fixed returns a schedule that locks out for d every time.
func Fixed(d time.Duration) Schedule { return listSchedule{d} }

// List returns a schedule whose n-th lockout lasts ds[n-1]; the last entry
// repeats. [Forever] may be the last entry: django-defender's escalation is
// List(time.Minute, 2*time.Minute, 5*time.Minute, 10*time.Minute, Forever).
func List(ds ...time.Duration) Schedule { return listSchedule(ds) }

type listSchedule []time.Duration

func (s listSchedule) Lockout(n int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(max(n, 1), len(s))-1]
}

func (s listSchedule) validate() error {
	if len(s) == 0 {
		return errors.New("empty schedule")
	}
	for i, d := range s {
		switch {
		case d == Forever && i == len(s)-1:
		case d == Forever:
			return fmt.Errorf("entry %d of %d is Forever: only the last entry may be", i+1, len(s))
		case d <= 0:
			return fmt.Errorf("entry %d is %v: want a positive duration or Forever", i+1, d)
		}
	}
	return nil
}

// ExponentialSchedule locks out for Base, then Base*Factor, Base*Factor², ...
// up to Max. With Jitter j > 0, each duration is stretched by a random
// fraction in [0, j) of itself, but never beyond Max, so that clients locked
// out together do not all come back at once.
type ExponentialSchedule struct {
	// Base is the first lockout's length.
	Base time.Duration
	// Factor multiplies each lockout's length to give the next one's.
	Factor float64
	// Max caps every lockout's length.
	Max time.Duration
	// Jitter, in [0, 1), stretches each length by a random fraction of
	// itself below it; 0: none.
	Jitter float64
}

// Exponential returns an exponential schedule without jitter. Set Jitter on
// the result for some.
func Exponential(base time.Duration, factor float64, maxDuration time.Duration) ExponentialSchedule {
	return ExponentialSchedule{Base: base, Factor: factor, Max: maxDuration}
}

// Lockout implements Schedule.
func (s ExponentialSchedule) Lockout(n int) time.Duration {
	d := float64(s.Base) * math.Pow(s.Factor, float64(max(n, 1)-1))
	if s.Jitter > 0 {
		d += d * s.Jitter * rand.Float64()
	}
	if d >= float64(s.Max) || math.IsNaN(d) {
		return s.Max
	}
	return time.Duration(d)
}

func (s ExponentialSchedule) validate() error {
	switch {
	case s.Base <= 0:
		return fmt.Errorf("exponential base %v: want > 0", s.Base)
	case s.Factor < 1 || math.IsInf(s.Factor, 0) || math.IsNaN(s.Factor):
		return fmt.Errorf("exponential factor %v: want a finite number >= 1", s.Factor)
	case s.Max < s.Base:
		return fmt.Errorf("exponential maximum %v: want >= base %v (Forever is only for List)", s.Max, s.Base)
	case s.Jitter < 0 || s.Jitter > 1 || math.IsNaN(s.Jitter):
		return fmt.Errorf("exponential jitter %v: want within [0, 1]", s.Jitter)
	}
	return nil
}

// lockDuration asks s for the n-th lockout and checks the answer.
func lockDuration(s Schedule, n int) (time.Duration, error) {
	d := s.Lockout(n)
	if d <= 0 && d != Forever {
		return 0, fmt.Errorf("lockout: schedule returned %v for lockout %d: want > 0 or Forever", d, n)
	}
	return d, nil
}
