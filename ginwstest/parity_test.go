package ginwstest_test

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/ginwstest"
)

// TestDoneWhenServerEndsWithoutReader: Done is documented to close when
// the connection has ended, whichever side ended it. Here the handler
// returns, ginws sends its close frame, waits its close timeout for the
// answer and closes its end; the test only waits on Done, as a test
// waiting for the server to hang up would. Done must close (a later read
// still returns the server's close).
func TestDoneWhenServerEndsWithoutReader(t *testing.T) {
	ended := make(chan struct{})
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/return", func(conn *ginws.Conn, _ *gin.Context) error {
			conn.OnClose(func(*ginws.Conn, error) { close(ended) })
			return nil
		}, ginws.CloseTimeout(200*time.Millisecond))
	})
	c := dial(t, r, "/return")
	select {
	case <-ended: // the server's end is closed
	case <-time.After(10 * time.Second):
		t.Fatal("the server's connection did not end")
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done is not closed 10 s after the server closed its end of the connection")
	}
	_, _, err := c.ReadMessage(testCtx(t))
	assert.Equal(t, ginws.StatusNormalClosure, ginws.CloseStatus(err), "the server's close is still read: %v", err)
}

// realClient is a gobwas/ws client on a loopback socket: what the
// application's users run, to compare with ginwstest's in-memory one.
type realClient struct {
	nc net.Conn
	rd *wsutil.Reader
}

func dialReal(t *testing.T, h *gin.Engine, path string) *realClient {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	nc, _, _, err := ws.Dial(testCtx(t), "ws"+strings.TrimPrefix(ts.URL, "http")+path)
	require.NoError(t, err)
	c := &realClient{nc: nc, rd: &wsutil.Reader{Source: nc, State: ws.StateClientSide,
		OnIntermediate: wsutil.ControlFrameHandler(nc, ws.StateClientSide)}}
	t.Cleanup(func() {
		_ = ws.WriteFrame(nc, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, _ = wsutil.ReadServerData(nc) // until the server's close
		_ = nc.Close()
	})
	return c
}

// readFor reads (answering pings) for d and reports the close code the
// server ended the connection with, 0 when it did not.
func (c *realClient) readFor(d time.Duration) ginws.StatusCode {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	for {
		hdr, err := c.rd.NextFrame()
		if err == nil && hdr.OpCode.IsControl() {
			err = c.rd.OnIntermediate(hdr, c.rd)
		} else if err == nil {
			err = c.rd.Discard()
		}
		var ce wsutil.ClosedError
		var ne net.Error
		switch {
		case errors.As(err, &ce):
			return ginws.StatusCode(ce.Code)
		case errors.As(err, &ne) && ne.Timeout():
			return 0
		case err != nil:
			return ginws.StatusAbnormalClosure
		}
	}
}

// TestIdleTimeoutParityWithPendingMessage: a handler that does not read
// has a message of the client's waiting; the client keeps answering the
// server's pings. Over a real socket ginws sees the pongs arrive and keeps
// the connection (IdleTimeout drops a peer from which "nothing at all" has
// come); through ginwstest the same live client is dropped with 1001, so a
// keepalive test passes or fails depending on the transport.
func TestIdleTimeoutParityWithPendingMessage(t *testing.T) {
	setup := func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/w", func(conn *ginws.Conn, _ *gin.Context) error {
			<-conn.Done() // writes, never reads
			return nil
		})
	}
	// An idle timeout long enough that a stalled test process does not
	// drop the live peer over the real socket.
	opts := []ginws.Option{ginws.IdleTimeout(time.Second), ginws.PingInterval(100 * time.Millisecond)}
	const watch = 3 * time.Second // three idle timeouts

	rr, _ := newEngine(t, setup, opts...)
	rc := dialReal(t, rr, "/w")
	require.NoError(t, wsutil.WriteClientText(rc.nc, []byte("pending")))
	require.Equal(t, ginws.StatusCode(0), rc.readFor(watch), "over a real socket the connection stays open")

	mr, _ := newEngine(t, setup, opts...)
	mc := dial(t, mr, "/w")
	ctx := testCtx(t)
	require.NoError(t, mc.WriteMessage(ctx, ginws.MessageText, []byte("pending")))
	rctx, cancel := context.WithTimeout(ctx, watch)
	defer cancel()
	_, _, err := mc.ReadMessage(rctx) // answers the pings
	assert.ErrorIs(t, err, context.DeadlineExceeded,
		"through ginwstest the live client is dropped (close status %d): %v", ginws.CloseStatus(err), err)
}

// TestOnPingPayloadIsTheCallers: OnPing and OnPong hand the payload to the
// test, which keeps it (nothing says it is valid only during the call, as
// ReadMessage's slice "is the caller's"). A later control frame must not
// change the payloads kept.
func TestOnPingPayloadIsTheCallers(t *testing.T) {
	r, _ := newEngine(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ping", func(conn *ginws.Conn, c *gin.Context) error {
			for _, p := range []string{"first", "second", "third!"} {
				if err := conn.Ping(c, []byte(p)); err != nil {
					return err
				}
			}
			return conn.WriteMessage(c, ginws.MessageText, []byte("done"))
		})
	})
	var pings [][]byte
	c := dial(t, r, "/ping", ginwstest.OnPing(func(p []byte) { pings = append(pings, p) }))
	_, p, err := c.ReadMessage(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "done", string(p))
	got := make([]string, len(pings))
	for i, p := range pings {
		got[i] = string(p)
	}
	assert.Equal(t, []string{"first", "second", "third!"}, got)
}
