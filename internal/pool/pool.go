// Package pool holds the byte buffers every connection borrows: power-of-two
// size classes, each a sync.Pool.
package pool

import (
	"math/bits"
	"sync"
)

// Buffers live in pools of power-of-two size classes from 512 B to 64 MiB,
// and are held only for the length of one operation, so an idle
// connection holds none.
const (
	minClass = 9  // 512 B
	maxClass = 26 // 64 MiB
)

var pools [maxClass + 1]sync.Pool

func classOf(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

// Get returns a buffer with len 0 and cap >= n.
func Get(n int) *[]byte {
	c := classOf(n)
	if c > maxClass {
		b := make([]byte, 0, n)
		return &b
	}
	if v := pools[c].Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, 0, 1<<c)
	return &b
}

// Put gives b back; buffers of no class (grown by append past their class,
// or too large) are left to the collector.
func Put(b *[]byte) {
	c := classOf(cap(*b))
	if c > maxClass || cap(*b) != 1<<c {
		return
	}
	*b = (*b)[:0]
	pools[c].Put(b)
}
