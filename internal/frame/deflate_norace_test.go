//go:build !race

package frame

const raceOn = false
