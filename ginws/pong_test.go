//go:build unix

package ginws

import (
	"context"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/internal/loopback"
	"github.com/ginws/ginws/internal/rbuf"
)

// TestPongSentWhenHandedLockGivesUp: writer A holds the write lock, so the
// reader leaves the pong for a ping with the holder (queuePong). Writer B
// waits for the lock with a context. A lets go: the lock is handed to B,
// and A's flushPong finds it taken, counting on the new holder. But B's
// context ends as it is handed the lock, and B passes it on: the pong must
// still go out, though nobody writes again. The queue's lock orders the
// two: A's hand-off first, then B's give-up.
func TestPongSentWhenHandedLockGivesUp(t *testing.T) {
	const rounds = 5
	lost := 0
	for range rounds {
		srv, cl := loopback.TCPPair(t)
		cfg := defaultConfig()
		c := &Conn{nc: srv, br: rbuf.New(srv, nil), cfg: &cfg, done: make(chan struct{})}
		c.wdl.c = c
		c.wdl.flags.Store(dlWrite)

		require.True(t, c.tryLockWrite()) // writer A
		ctx, cancel := context.WithCancel(context.Background())
		gaveUp := make(chan error, 1)
		go func() { gaveUp <- c.lockWrite(ctx) }() // writer B
		require.Eventually(t, func() bool { return c.wl.state.Load() == wlHeld|wlQueued }, 5*time.Second, time.Millisecond)

		c.queuePong([]byte("p")) // the reader, while A holds the lock
		require.True(t, c.pongWait.Load(), "left for the holder")

		// A lets go and B gives up at the same moment; the queue's lock
		// orders them: A's hand-off first, then B's give-up.
		q := c.wl.q.Load()
		q.mu.Lock()
		let := make(chan struct{})
		go func() { c.unlockWrite(); close(let) }()
		time.Sleep(2 * time.Millisecond)
		cancel()
		time.Sleep(2 * time.Millisecond)
		q.mu.Unlock()
		<-let
		if err := <-gaveUp; err == nil {
			c.unlockWrite() // B got it after all, and wrote nothing
		}

		// Nobody holds the lock, nobody will write: the pong must be out.
		require.Eventually(t, func() bool { return c.wl.state.Load() == 0 }, 5*time.Second, time.Millisecond)
		_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := ws.ReadHeader(cl)
		if err != nil {
			lost++
			assert.True(t, c.pongWait.Load(), "the pong still waits for a holder that is gone")
		} else {
			assert.Equal(t, ws.OpPong, h.OpCode)
		}
		if c.pong != nil {
			c.pong = nil
		}
	}
	assert.Zero(t, lost, "pongs never sent in %d rounds", rounds)
}
