//go:build unix

package ginws

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/internal/frame"
	"github.com/ginws/ginws/internal/loopback"
	"github.com/ginws/ginws/internal/rbuf"
)

// TestWriteFrameLockedNoWait: a control frame goes out through writeNow,
// without a deadline, while the socket takes it; when the peer reads
// nothing and the buffers are full, the rest waits no longer than the
// given time; a peer that is gone is an error at once.
func TestWriteFrameLockedNoWait(t *testing.T) {
	srv, cl := loopback.TCPPair(t)
	c := &Conn{nc: srv, br: rbuf.New(srv, nil)}
	c.wdl.c = c
	c.wdl.flags.Store(dlWrite)
	require.NotNil(t, c.br.RawConn())

	f := frame.AppendCloseFrame(nil, 1000, "bye")
	rest, err := c.writeNow(f)
	require.NoError(t, err)
	assert.Empty(t, rest, "an empty send buffer takes the whole frame")
	got := make([]byte, len(f))
	_, err = io.ReadFull(cl, got)
	require.NoError(t, err)
	assert.Equal(t, f, got)
	assert.Zero(t, c.wdl.flags.Load()&dlMoved, "no deadline was set")

	// Fill the send buffer and the peer's receive buffer.
	require.NoError(t, srv.SetWriteBuffer(4096))
	require.NoError(t, cl.SetReadBuffer(4096))
	// Full means a write after a pause takes nothing: acknowledgements
	// the kernel handles late free room after the first short write.
	junk := make([]byte, 64<<10)
	for full := false; !full; {
		rest, err := c.writeNow(junk)
		require.NoError(t, err)
		if len(rest) == len(junk) {
			full = true
		} else if len(rest) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	rest, err = c.writeNow(f)
	require.NoError(t, err, "a full buffer is not an error")
	assert.Equal(t, f, rest, "nothing was written")

	start := time.Now()
	err = c.writeFrameLocked(f, 100*time.Millisecond)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "the rest waits no longer than wait")
	assert.Less(t, time.Since(start), 5*time.Second)

	// While the deadline has passed, writeNow writes nothing (the caller
	// then sets one of its own).
	rest, err = c.writeNow(f)
	assert.NoError(t, err)
	assert.Equal(t, f, rest)
	// The next write call's bind puts the user's deadline (none) back.
	require.NoError(t, c.wdl.bind(context.Background(), nil))

	// A peer that is gone (RST: it closes with unread bytes).
	require.NoError(t, cl.SetLinger(0))
	require.NoError(t, cl.Close())
	require.Eventually(t, func() bool {
		_, err := c.writeNow(f)
		return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	}, 5*time.Second, 5*time.Millisecond)
}
