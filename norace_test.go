//go:build !race

package lockout_test

const raceEnabled = false
