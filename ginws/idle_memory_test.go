//go:build !race

// The race detector makes every goroutine's stack larger (an idle handler
// takes 8 KiB under it), so these figures hold only without it; make test
// runs this file on its own, without -race.

package ginws_test

import (
	"io"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
)

// TestIdleMemory holds the memory an idle connection costs the server to
// what bench/memory-notes.md explains: a connection whose handler loops
// keeps one goroutine and no read buffer; an event-driven one keeps no
// goroutine at all. The looping handler's stack is 4 KiB with no
// middleware: its deepest points (net/http's hijack, a read) stay under a
// 4 KiB stack's limit by less than 100 bytes, under net/http's and gin's
// frames. One middleware takes it past, to 8 KiB, which it keeps (the
// runtime halves a stack only while a quarter of it is in use, and
// net/http's own frame is 1.1 KiB): that is the bound behind gin.Default's
// two. The heap bounds leave room for other Go and gin versions but not
// for a 4 KiB buffer held per connection.
func TestIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 500 connections from a child process")
	}
	const n = 500
	ginDefault := []gin.HandlerFunc{gin.LoggerWithWriter(io.Discard), gin.Recovery()}
	t.Run("loop", func(t *testing.T) {
		m := idleMemory(t, echoHandler, n)
		t.Logf("per connection: stack %.0f B, heap %.0f B, goroutines %.3f", m.stack, m.heap, m.goroutines)
		assert.InDelta(t, 1, m.goroutines, 0.01)
		assert.LessOrEqual(t, m.stack, 4096+512.0, "the handler's stack grew past 4 KiB")
		assert.LessOrEqual(t, m.heap, 8192.0)
	})
	t.Run("loop behind gin.Default's middleware", func(t *testing.T) {
		m := idleMemory(t, echoHandler, n, ginDefault...)
		t.Logf("per connection: stack %.0f B, heap %.0f B, goroutines %.3f", m.stack, m.heap, m.goroutines)
		assert.InDelta(t, 1, m.goroutines, 0.01)
		assert.LessOrEqual(t, m.stack, 8192+512.0, "the handler's stack grew past 8 KiB")
		assert.LessOrEqual(t, m.heap, 8192.0)
	})
	for _, mw := range [][]gin.HandlerFunc{nil, ginDefault} {
		name := "events"
		if mw != nil {
			name += " behind gin.Default's middleware"
		}
		t.Run(name, func(t *testing.T) {
			m := idleMemory(t, eventEcho, n, mw...)
			t.Logf("per connection: stack %.0f B, heap %.0f B, goroutines %.3f", m.stack, m.heap, m.goroutines)
			assert.InDelta(t, 0, m.goroutines, 0.01)
			// A goroutine's smallest stack is 2 KiB; the stacks of the
			// request goroutines that just ended may still be counted.
			assert.LessOrEqual(t, m.stack, 1024.0, "an idle event-driven connection holds a stack")
			assert.LessOrEqual(t, m.heap, 4096.0)
		})
	}
}
