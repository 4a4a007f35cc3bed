package ginws

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/internal/loopback"
)

// TestDeadlineFastPath: a call whose context needs no watch takes no lock
// while nothing is watched, yet still ends the watch of an earlier call's
// context and puts back a deadline an ended context had moved. A watch
// acts only during its call (between bind and release).
func TestDeadlineFastPath(t *testing.T) {
	srv, cl := loopback.TCPPair(t)
	c := &Conn{nc: srv}
	d := &c.rdl
	d.c = c
	own := make(chan struct{})
	readOne := func() error {
		if _, err := cl.Write([]byte{1}); err != nil {
			return err
		}
		_, err := srv.Read(make([]byte, 1))
		return err
	}

	require.NoError(t, d.bind(context.Background(), own))
	assert.Zero(t, d.flags.Load())

	// Watched, then a call without a watch: the first context's end must
	// not move the socket's deadline any more.
	a, cancelA := context.WithCancel(context.Background())
	require.NoError(t, d.bind(a, own))
	assert.Equal(t, uint32(dlWatching|dlActive), d.flags.Load())
	require.NoError(t, d.bind(context.Background(), own))
	assert.Zero(t, d.flags.Load())
	cancelA()
	time.Sleep(20 * time.Millisecond)
	assert.Zero(t, d.flags.Load())
	require.NoError(t, readOne(), "an ended context no longer watched moved the deadline")

	// Watched and ended: the deadline is in the past until a call puts the
	// user's back, whatever its context.
	b, cancelB := context.WithCancel(context.Background())
	require.NoError(t, d.bind(b, own))
	cancelB()
	require.Eventually(t, func() bool { return lockedFlags(d)&dlMoved != 0 }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, readOne(), os.ErrDeadlineExceeded)
	require.NoError(t, d.bind(ctxWithDone(own), own))
	assert.Zero(t, d.flags.Load())
	require.NoError(t, readOne())

	// Watched, and ended after its call: the socket is left alone, and
	// the watch stays for the next call with the same context.
	e, cancelE := context.WithCancel(context.Background())
	require.NoError(t, d.bind(e, own))
	d.release()
	assert.Equal(t, uint32(dlWatching), d.flags.Load())
	cancelE()
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, uint32(dlWatching), d.flags.Load())
	require.NoError(t, readOne(), "a context that ended after its call moved the deadline")

	// Ended during its call: the deadline moved is put back at its end.
	f, cancelF := context.WithCancel(context.Background())
	require.NoError(t, d.bind(f, own))
	cancelF()
	require.Eventually(t, func() bool { return lockedFlags(d)&dlFired != 0 }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, readOne(), os.ErrDeadlineExceeded)
	d.release()
	assert.Equal(t, uint32(dlWatching), d.flags.Load())
	require.NoError(t, readOne())
	d.stop()
}

// lockedFlags reads d's flags under its lock: a watch sets them and then
// moves the socket deadline, both under the lock, so flags read without
// it can show the deadline moved before it is.
func lockedFlags(d *deadline) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flags.Load()
}

// ctxWithDone is a context whose Done is done, like the connection's own.
type ctxWithDone <-chan struct{}

func (ctxWithDone) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c ctxWithDone) Done() <-chan struct{}     { return c }
func (ctxWithDone) Err() error                  { return nil }
func (ctxWithDone) Value(any) any               { return nil }

// pausingCtx is a context whose Err, once armed, stops after it has looked
// at the context: it stands for the goroutine being descheduled between
// bind's ctx.Err() and its d.mu.Lock().
type pausingCtx struct {
	context.Context
	checked chan struct{}
	resume  chan struct{}
}

func (c *pausingCtx) Err() error {
	err := c.Context.Err()
	if ch := c.checked; ch != nil {
		c.checked = nil // once: bind's first look only
		close(ch)
		<-c.resume
	}
	return err
}

// TestReviewBindReuseLosesCancel: a context reused for a second call that
// ends between bind's ctx.Err() and its lock has its watch fire while no
// call is active (a no-op), and bind then marks the call active and
// returns nil: the call runs with the socket deadline untouched, so a read
// waits for the peer however long, though its context has ended.
// TestDeadlineContextEndsAsCallBegins: a call reusing a watched context
// that ends between bind's first look at it and bind taking the lock
// (its watch then finds no call to act on) reports the end, rather than
// running unbounded.
func TestDeadlineContextEndsAsCallBegins(t *testing.T) {
	srv, _ := loopback.TCPPair(t)
	c := &Conn{nc: srv}
	d := &c.rdl
	d.c = c
	own := make(chan struct{})

	inner, cancel := context.WithCancel(context.Background())
	ctx := &pausingCtx{Context: inner}
	require.NoError(t, d.bind(ctx, own)) // first call: the watch is made
	d.release()                          // that call ended; the watch stays

	ctx.checked, ctx.resume = make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	checked := ctx.checked
	go func() { errc <- d.bind(ctx, own) }() // second call, same context
	<-checked                                // it saw the context alive
	cancel()                                 // the context ends now
	time.Sleep(50 * time.Millisecond)        // its watch runs (inactive: a no-op)
	close(ctx.resume)
	if err := <-errc; err != nil {
		t.Logf("bind reported the ended context: %v", err)
		d.release()
		d.stop()
		return
	}
	t.Logf("flags after bind: %05b (dlActive=%d dlFired=%d)", d.flags.Load(), dlActive, dlFired)

	readc := make(chan error, 1)
	go func() {
		_, err := srv.Read(make([]byte, 1))
		readc <- err
	}()
	select {
	case err := <-readc:
		t.Logf("read ended: %v", err)
	case <-time.After(time.Second):
		_ = srv.Close()
		<-readc
		t.Fatal("the call's context ended, yet its read was not interrupted (socket deadline never moved)")
	}
	d.release()
	d.stop()
}
