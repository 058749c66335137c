//go:build race

package lockout_test

// raceEnabled is set when the race detector is on. It makes sync.Pool drop
// some of what it is given, on purpose, so pooled scratch is allocated again
// now and then.
const raceEnabled = true
