//go:build race

package frame

// raceOn: under the race detector sync.Pool drops some of what it is given,
// so allocation counts are not checked.
const raceOn = true
