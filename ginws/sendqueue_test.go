package ginws

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/internal/loopback"
)

// TestOverflowRacingCloseSendsOneClose: a broadcast finds a slow
// connection's queue full and starts the overflow while the handler closes
// the connection (as soon as the overflow has recorded its cause). The
// peer gets one close frame, never two (RFC 6455 section 5.5.1).
func TestOverflowRacingCloseSendsOneClose(t *testing.T) {
	const queue = 50000
	s := New(SendQueue(queue), CloseTimeout(time.Minute))
	conns := make(chan *Conn, 1)
	r := gin.New()
	s.Handle(r, "/room", func(conn *Conn, c *gin.Context) error {
		conns <- conn
		for {
			if _, _, err := conn.ReadMessage(context.Background()); err != nil {
				return err
			}
		}
	})
	hs := httptest.NewUnstartedServer(r)
	hs.Listener = loopback.SmallSendBuffers(hs.Listener, 8<<10)
	hs.Start()
	defer hs.Close()
	nc := dialSmallReadBuffer(t, hs.URL+"/room")
	defer nc.Close()
	c := <-conns

	// As soon as the overflow has begun (its cause is recorded before it
	// drops the queued frames), the handler's side closes.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			c.errMu.Lock()
			cause := c.cerr
			c.errMu.Unlock()
			if errors.Is(cause, ErrSendQueueFull) {
				_ = c.Close()
				return
			}
			if c.isDone() {
				return
			}
			runtime.Gosched()
		}
	}()
	msg := make([]byte, 100)
	for i := 0; s.Broadcast(ToAll(), MessageBinary, msg) == 1; i++ {
		require.Less(t, i, 10*queue, "no overflow")
	}

	// The client reads everything and does not answer: count close frames.
	// A second one would follow the first at once; before the first, the
	// wait is long, for a machine busy with other tests.
	closes := []uint16{}
	for {
		wait := 30 * time.Second
		if len(closes) > 0 {
			wait = time.Second
		}
		_ = nc.SetReadDeadline(time.Now().Add(wait))
		h, err := ws.ReadHeader(nc)
		if err != nil {
			break // EOF, or nothing more
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(nc, p); err != nil {
			break
		}
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(p)
			closes = append(closes, uint16(code))
		}
	}
	_ = nc.Close()
	<-closed
	assert.Len(t, closes, 1, "close frames the peer got: %v", closes)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}

// dialSmallReadBuffer opens a WebSocket to the http:// URL with a 4 KiB
// receive buffer, so that what the client does not read soon blocks the
// server's writes.
func dialSmallReadBuffer(t *testing.T, url string) net.Conn {
	t.Helper()
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	nc, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(url, "http"))
	require.NoError(t, err)
	require.Nil(t, br, "nothing came after the 101")
	return nc
}

// stalledPeer serves s's route /room, whose handler hands its Conn over
// and runs h (or waits for the end, when h is nil), to a peer that never
// reads, over sockets with small buffers: what the server writes soon
// blocks.
func stalledPeer(t *testing.T, s *Server, h func(*Conn)) *Conn {
	t.Helper()
	conns := make(chan *Conn, 1)
	r := gin.New()
	s.Handle(r, "/room", func(conn *Conn, c *gin.Context) error {
		conns <- conn
		if h != nil {
			h(conn)
		}
		<-conn.Done()
		return nil
	})
	hs := httptest.NewUnstartedServer(r)
	hs.Listener = loopback.SmallSendBuffers(hs.Listener, 8<<10)
	hs.Start()
	nc := dialSmallReadBuffer(t, hs.URL+"/room")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = nc.Close()
		require.NoError(t, s.Shutdown(ctx))
		hs.Close()
	})
	return <-conns
}

// TestUserWriteDeadlineLeavesFlushBound: the broadcast flusher bounds its
// write by the close timeout; a SetWriteDeadline the handler makes while
// the flusher writes (clearing the deadline, as a handler does after each
// write of its own) must not take that bound away. The peer here never
// reads: the connection must still be dropped, where before it stayed
// open for good, its flusher blocked and IdleTimeout blind to it (a write
// in progress counts as a sign of life).
func TestUserWriteDeadlineLeavesFlushBound(t *testing.T) {
	s := New(CloseTimeout(300*time.Millisecond), IdleTimeout(time.Second))
	c := stalledPeer(t, s, nil)

	// Far more than the socket buffers hold: the flusher blocks in its
	// write, which it has bounded (its override moved the deadline).
	require.Equal(t, 1, s.Broadcast(ToAll(), MessageBinary, make([]byte, 4<<20)))
	require.Eventually(t, func() bool {
		return c.wseq.Load()&1 == 1 && c.wdl.flags.Load()&dlMoved != 0
	}, 10*time.Second, time.Millisecond, "the flusher never began its write")
	require.NoError(t, c.SetWriteDeadline(time.Time{}))

	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a peer that takes nothing was never dropped: the flush lost its bound")
	}
}

// TestCloseBehindBlockedWriteErrors: a Close that cannot have the write
// lock within the close timeout (a write to a peer that reads nothing
// holds it) drops the connection. The calls that fail then report the
// connection closed, not context.DeadlineExceeded, the error of a timer
// inside Close: a handler that tells its own timeouts apart with
// errors.Is(err, context.DeadlineExceeded), and goes on after one, took a
// dead connection for a usable one.
func TestCloseBehindBlockedWriteErrors(t *testing.T) {
	s := New(CloseTimeout(300 * time.Millisecond))
	c := stalledPeer(t, s, nil)

	writeErr := make(chan error, 1)
	go func() { writeErr <- c.WriteMessage(context.Background(), MessageBinary, make([]byte, 4<<20)) }()
	require.Eventually(t, func() bool { return c.wseq.Load()&1 == 1 }, 10*time.Second, time.Millisecond,
		"the write never began")
	_ = c.Close()
	require.True(t, c.isDone(), "Close returned with the connection open")

	var err error
	select {
	case err = <-writeErr:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked write never returned")
	}
	for _, err := range []error{err, c.WriteMessage(context.Background(), MessageText, []byte("late"))} {
		assert.ErrorIs(t, err, ErrClosed)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "%v", err)
	}
}

// TestReadAfterFlushTimeoutIsNoTimeout: a connection dropped because the
// peer took none of a broadcast for the close timeout is reported to the
// handler's reads as closed, not as a timeout. A read whose deadline
// passes before a message leaves the connection usable (doc.go), so a
// handler that reads on after os.ErrDeadlineExceeded, as that allows,
// spun on the dead connection: every read returned at once an error
// matching it, the flusher's write timeout.
func TestReadAfterFlushTimeoutIsNoTimeout(t *testing.T) {
	s := New(CloseTimeout(300 * time.Millisecond))
	readErr := make(chan error, 1)
	stalledPeer(t, s, func(conn *Conn) {
		afterEnd := 0
		for {
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			_, _, err := conn.ReadMessage(context.Background())
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// One timeout may cross the end; a second one after
				// it comes from the dead connection.
				if conn.isDone() {
					afterEnd++
				}
				if afterEnd < 2 {
					continue
				}
			}
			readErr <- err
			return
		}
	})
	require.Equal(t, 1, s.Broadcast(ToAll(), MessageBinary, make([]byte, 4<<20)))
	var err error
	select {
	case err = <-readErr:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not dropped")
	}
	assert.ErrorIs(t, err, ErrClosed)
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "%v", err)
	assert.False(t, isTimeout(err), "%v", err)
}
