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

	"github.com/ginws/ginws/ginws"
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
	for _, tc := range []struct {
		name       string
		h          ginws.Handler
		mw         []gin.HandlerFunc
		goroutines float64
		stack      float64 // at most, per connection
		heap       float64 // at most, per connection
	}{
		{"loop", echoHandler, nil, 1, 4096 + 512, 8192},
		{"loop behind gin.Default's middleware", echoHandler, ginDefault, 1, 8192 + 512, 8192},
		{"events", eventEcho, nil, 0, 512, 4096},
		// A goroutine's smallest stack is 2 KiB; the 8 KiB stacks of the
		// request goroutines that just ended may still be counted (up to
		// 393 B a connection seen).
		{"events behind gin.Default's middleware", eventEcho, ginDefault, 0, 1024, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := idleMemory(t, tc.h, n, tc.mw...)
			t.Logf("per connection: stack %.0f B, heap %.0f B, goroutines %.3f", m.stack, m.heap, m.goroutines)
			assert.InDelta(t, tc.goroutines, m.goroutines, 0.01)
			assert.LessOrEqual(t, m.stack, tc.stack, "the stacks grew")
			assert.LessOrEqual(t, m.heap, tc.heap, "the heap grew")
		})
	}
}
