//go:build linux

// Only Linux tells how much of a write the peer has acknowledged (TCP_INFO),
// and the sizes below are what its TCP stack makes of the buffers.

package ginws_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// The sizes of the messages behind which the keepalive's ping finds the
// server's send buffer full (8 KiB, smallBufferServer), the client taking
// them in through a 4 KiB receive buffer (dialSmallWindow): frames of 20
// and 28 KiB, which the kernel queues in whole segments of 2 KiB (half the
// client's window; seen on Linux 6.18), so that the ping cannot be added
// to the last one and needs room that the buffer does not have.
var backlogSizes = []int{20<<10 - 4, 28<<10 - 4}

// dialSmallWindow is dialSlowReader with the receive buffer set before the
// connection is made: the client never offers a larger window than the
// buffer holds, so that what it has not read waits in the server's send
// queue, not sent, as with a peer on a slow link.
func dialSmallWindow(t *testing.T, url string, rcvbuf int) *client {
	t.Helper()
	nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	nc, br, _, err := ws.Dialer{NetDial: nd.DialContext}.Dial(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	return &client{t: t, nc: nc, r: r}
}

// slowReader takes in at most n bytes every 10 ms: a peer on a slow link
// that keeps reading.
type slowReader struct {
	r io.Reader
	n int
}

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	return s.r.Read(p[:min(len(p), s.n)])
}

// A live client taking in a message slowly, steadily, after the handler's
// write returned, with its bytes filling the server's send buffer: the
// keepalive's ping cannot go out until the client has made room. With
// IdleTimeout set, the client's acknowledgements of that backlog keep it
// alive (IdleTimeout's doc), and the ping that must wait may not drop it
// after one ping interval: the connection must outlive a hundred of them
// and its idle timeout while the client drains, and then echo. (The idle
// timeout is above the time the client takes to read its own receive
// buffer, once our send queue is empty: no acknowledgement can count then.)
func TestKeepaliveDrainingPeerSurvivesBlockedPing(t *testing.T) {
	for _, size := range backlogSizes {
		t.Run(fmt.Sprint(size+4), func(t *testing.T) {
			s := ginws.New(ginws.PingInterval(20*time.Millisecond), ginws.IdleTimeout(time.Second))
			r := gin.New()
			wrote := make(chan handlerResult, 1)
			ended := make(chan handlerResult, 1)
			s.Handle(r, "/big", func(conn *ginws.Conn, c *gin.Context) error {
				err := conn.WriteMessage(c, ginws.MessageBinary, make([]byte, size))
				wrote <- handlerResult{err, time.Now()}
				if err == nil {
					err = echoHandler(conn, c)
				}
				ended <- handlerResult{err, time.Now()}
				return err
			})
			url := smallBufferServer(t, r, "/big")
			shutdownAtEnd(t, s)
			starved := starvation(t)
			c := dialSmallWindow(t, url, 4<<10)
			// About 12 KB/s: the backlog takes about two idle timeouts to
			// drain.
			sr := slowReader{c.r, 128}
			require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(30*time.Second)))
			start := time.Now()
			dropped := func(err error) {
				t.Helper()
				var h handlerResult
				select {
				case h = <-ended:
				case <-time.After(5 * time.Second):
				}
				timely(t, starved, 200*time.Millisecond, false,
					"dropped while the client was draining (seen %v in): %v; the handler's error: %v", time.Since(start), err, h.err)
			}
			h, err := ws.ReadHeader(sr)
			if err != nil {
				dropped(err)
				return
			}
			require.Equal(t, ws.OpBinary, h.OpCode)
			require.Equal(t, int64(size), h.Length)
			if _, err := io.CopyN(io.Discard, sr, h.Length); err != nil {
				dropped(err)
				return
			}
			w := waitFor(t, wrote, 5*time.Second, "the handler's write")
			require.NoError(t, w.err)
			t.Logf("drained %d bytes in %v, %v of them after the write returned", size, time.Since(start), time.Since(w.at))
			// The pings queued behind the message, and the echo.
			if err := echoErr(c, []byte("still here")); err != nil {
				dropped(err)
				return
			}
			c.sendClose(ws.StatusNormalClosure, "")
			code, _ := c.expectClose()
			assert.Equal(t, ws.StatusNormalClosure, code)
			e := waitFor(t, ended, 5*time.Second, "the handler's end")
			assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(e.err), "%v", e.err)
		})
	}
}

// The other side: a client that takes in nothing more once the message is
// written (its application hangs, or it vanished) is still dropped: by
// IdleTimeout, as ErrIdleTimeout, when it is set; by the ping that cannot
// go out when PingInterval alone is.
func TestKeepaliveHungPeerBehindBacklog(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []ginws.Option
	}{
		{"IdleTimeout", []ginws.Option{ginws.PingInterval(20 * time.Millisecond), ginws.IdleTimeout(500 * time.Millisecond)}},
		{"PingInterval alone", []ginws.Option{ginws.PingInterval(20 * time.Millisecond)}},
	} {
		for _, size := range backlogSizes[:1] { // the larger one does not fit in the buffers
			t.Run(fmt.Sprint(tc.name, "/", size+4), func(t *testing.T) {
				s := ginws.New(tc.opts...)
				r := gin.New()
				ended := make(chan handlerResult, 1)
				s.Handle(r, "/big", func(conn *ginws.Conn, c *gin.Context) error {
					ctx, cancel := context.WithTimeout(c, 5*time.Second) // a guard: the write fits in the buffers
					err := conn.WriteMessage(ctx, ginws.MessageBinary, make([]byte, size))
					cancel()
					if err == nil {
						_, _, err = conn.ReadMessage(c)
					}
					ended <- handlerResult{err, time.Now()}
					return err
				})
				url := smallBufferServer(t, r, "/big")
				shutdownAtEnd(t, s)
				dialSmallWindow(t, url, 4<<10) // reads nothing from here on
				e := waitFor(t, ended, 10*time.Second, "the hung client's drop")
				if tc.name == "IdleTimeout" {
					assert.ErrorIs(t, e.err, ginws.ErrIdleTimeout)
					assert.Equal(t, ginws.StatusAbnormalClosure, ginws.CloseStatus(e.err), "%v", e.err)
				} else {
					assert.ErrorIs(t, e.err, net.ErrClosed, "the ping's write timed out")
				}
			})
		}
	}
}
