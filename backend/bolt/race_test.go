//go:build race

package bolt

// raceEnabled is set when the race detector is on, which makes bbolt's
// page walks many times slower: time bounds allow for it.
const raceEnabled = true
