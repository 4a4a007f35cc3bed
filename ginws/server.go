package ginws

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
)

// Handler serves one WebSocket connection. It runs in the request's own
// goroutine, so c stays valid for the whole life of the connection; when
// it returns, the connection is closed (1000, or 1011 after an error or a
// panic, see ErrorHandler).
type Handler func(conn *Conn, c *gin.Context) error

// Server is the WebSocket side of a Gin application: the options shared by
// its routes, the set of live connections, and their shutdown. Create it
// with New; it is safe for concurrent use.
type Server struct {
	cfg config

	// The live connections, in shards with a lock each, so that
	// connections coming and going at once (a reconnect storm, Shutdown
	// of 100k) do not all queue on one lock.
	shards    [shardCount]shard
	nextShard atomic.Uint32

	closing  atomic.Bool
	dropping atomic.Bool // Shutdown's context has ended: see closeLate
	handlers sync.WaitGroup
	poll     poller  // idle event-driven connections (Conn.OnMessage)
	recheck  recheck // connections whose control pump waits on pumpDelay
}

// New returns a Server with the given options.
func New(opts ...Option) *Server {
	s := &Server{}
	d := defaultConfig()
	s.cfg = *d.clone(opts)
	return s
}

var (
	defaultOnce   sync.Once
	defaultServer *Server
)

// Default returns the Server behind the package-level Handle. It is
// created on first use with the default options.
func Default() *Server {
	defaultOnce.Do(func() { defaultServer = New() })
	return defaultServer
}

// Handle registers a WebSocket route on r with the Default server. See
// Server.Handle.
func Handle(r gin.IRoutes, path string, h Handler, opts ...Option) {
	Default().Handle(r, path, h, opts...)
}

func (s *Server) snapshot() []*Conn {
	var out []*Conn
	s.Range(ToAll(), func(c *Conn) bool { out = append(out, c); return true })
	return out
}

// Shutdown refuses new upgrades (503), sends every live connection a close
// frame with 1001 "going away", and waits for their handlers to return
// (and their OnClose callbacks).
// When ctx ends first, the remaining TCP connections are dropped, and
// Shutdown returns ctx.Err() once their handlers have returned too, or at
// once if a handler does not return.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	// Wait out the registrations in progress: each took its shard's lock
	// before it looked at closing, and after this none adds a handler.
	for i := range s.shards {
		s.shards[i].mu.Lock()
		//lint:ignore SA2001 the critical section is empty on purpose: a fence
		s.shards[i].mu.Unlock()
	}
	// Close frames go out in parallel: each close waits up to the close
	// timeout for its peer.
	var closers sync.WaitGroup
	for _, c := range s.snapshot() {
		closers.Go(c.goAway)
	}
	done := make(chan struct{})
	go func() {
		closers.Wait()
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// Set before the snapshot's locks: an upgrade under way that joins the
	// set after them sees it and drops its connection itself (closeLate).
	s.dropping.Store(true)
	for _, c := range s.snapshot() {
		c.abort(ErrShuttingDown)
	}
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond): // handlers that ignore their connection ending
	}
	return ctx.Err()
}
