package ginws

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
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
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	nc, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http")+"/room")
	require.NoError(t, err)
	defer nc.Close()
	require.Nil(t, br)
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

// TestUserWriteDeadlineLeavesFlushBound: the broadcast flusher bounds its
// write by the close timeout; a SetWriteDeadline the handler makes while
// the flusher writes (clearing the deadline, as a handler does after each
// write of its own) must not take that bound away. The peer here never
// reads: the connection must still be dropped, where before it stayed
// open for good, its flusher blocked and IdleTimeout blind to it (a write
// in progress counts as a sign of life).
func TestUserWriteDeadlineLeavesFlushBound(t *testing.T) {
	s := New(CloseTimeout(300*time.Millisecond), IdleTimeout(time.Second))
	conns := make(chan *Conn, 1)
	r := gin.New()
	s.Handle(r, "/room", func(conn *Conn, c *gin.Context) error {
		conns <- conn
		<-conn.Done()
		return nil
	})
	hs := httptest.NewUnstartedServer(r)
	hs.Listener = loopback.SmallSendBuffers(hs.Listener, 8<<10)
	hs.Start()
	defer hs.Close()
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return c, err
	}}
	nc, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(hs.URL, "http")+"/room")
	require.NoError(t, err)
	defer nc.Close()
	require.Nil(t, br)
	c := <-conns

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
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}
