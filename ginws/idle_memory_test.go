//go:build !race

// The race detector makes every goroutine's stack larger (an idle handler
// takes 8 KiB under it), so these figures hold only without it; make test
// runs this file on its own, without -race.

package ginws_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestIdleMemory holds the memory an idle connection costs the server to
// what bench/memory-notes.md explains: a connection whose handler loops
// keeps one goroutine with a 4 KiB stack (the floor for net/http's, gin's
// and ginws's frames under a read) and no read buffer; an event-driven one
// keeps no goroutine at all. The heap bounds leave room for other Go and
// gin versions but not for a 4 KiB buffer held per connection.
func TestIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 500 connections from a child process")
	}
	const n = 500
	t.Run("loop", func(t *testing.T) {
		m := idleMemory(t, echoHandler, n)
		t.Logf("per connection: stack %.0f B, heap %.0f B, goroutines %.3f", m.stack, m.heap, m.goroutines)
		assert.InDelta(t, 1, m.goroutines, 0.01)
		assert.LessOrEqual(t, m.stack, 4096+512.0, "the handler's stack grew past 4 KiB")
		assert.LessOrEqual(t, m.heap, 8192.0)
	})
	t.Run("events", func(t *testing.T) {
		m := idleMemory(t, eventEcho, n)
		t.Logf("per connection: stack %.0f B, heap %.0f B, goroutines %.3f", m.stack, m.heap, m.goroutines)
		assert.InDelta(t, 0, m.goroutines, 0.01)
		assert.LessOrEqual(t, m.stack, 512.0, "an idle event-driven connection holds a stack")
		assert.LessOrEqual(t, m.heap, 4096.0)
	})
}
