package ginws_test

import (
	"context"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// A peer that sends a last message and then ends TCP (a FIN, no close
// frame) while OnMessage is busy: the poller's reports of both come while
// the connection is being served, the look that follows reads the message
// in a short read, and the FIN behind it must still be read. The
// connection must end (OnClose with 1006, out of the Server), not sit idle
// in the poller forever.
func TestEventPeerFINBehindLastMessage(t *testing.T) {
	var cl closes
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/events", cl.wrap(func(conn *ginws.Conn, _ *gin.Context) error {
			conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
				if string(p) == "block" {
					entered <- struct{}{}
					<-release
				}
				return conn.WriteMessage(context.Background(), t, p)
			})
			return nil
		}))
	})
	c := dial(t, ts.wsURL("/events"), nil)
	time.Sleep(20 * time.Millisecond) // idle, in the poller
	c.send(ws.OpText, []byte("block"))
	<-entered
	// The last message and the FIN, while OnMessage is busy.
	c.send(ws.OpText, []byte("last"))
	require.NoError(t, c.nc.(*net.TCPConn).CloseWrite())
	time.Sleep(200 * time.Millisecond) // let the poller see both
	close(release)
	_, p := c.readMessage()
	assert.Equal(t, "block", string(p))
	_, p = c.readMessage()
	assert.Equal(t, "last", string(p))

	errs := cl.wait(t, 1) // fails after 10 s: OnClose never runs
	var ce *ginws.CloseError
	require.ErrorAs(t, errs[0], &ce)
	assert.Equal(t, ginws.StatusAbnormalClosure, ce.Code)
	assert.Zero(t, ts.ws.Len())
}

// A handler that bounds its login read with a read deadline, as with a
// net.Conn, then hands over: a message that comes after that deadline
// has passed must reach OnMessage. It closes the connection with 1011
// instead, and the ErrorHandler hears of an "i/o timeout" as if the
// application had failed: no read call was made after the deadline, and
// a deadline passing before a message has begun leaves the connection
// usable, the documentation says.
func TestEventReadDeadlineOfLoginKillsLaterMessage(t *testing.T) {
	reports := make(chan error, 4)
	sent := make(chan struct{}) // the login is on its way
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/events", func(conn *ginws.Conn, c *gin.Context) error {
			<-sent // so that the login comes before its deadline passes
			if err := conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
				return err
			}
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
			return eventEcho(conn, c)
		})
	}, ginws.ErrorHandler(func(err error, _ *ginws.Conn, _ *gin.Context) { reports <- err }))
	c := dial(t, ts.wsURL("/events"), nil)
	c.send(ws.OpText, []byte("login"))
	close(sent)
	time.Sleep(300 * time.Millisecond) // the login's deadline passes while idle
	c.send(ws.OpText, []byte("hello"))
	op, p := c.readMessage() // fails: close 1011
	assert.Equal(t, ws.OpText, op)
	assert.Equal(t, "hello", string(p))
	select {
	case err := <-reports:
		t.Errorf("ErrorHandler: %v", err)
	default:
	}
}

// Shutdown waits for the connections to end; an application closes what
// its OnClose callbacks use (a database, a presence map) once it returns.
// OnClose must then have run: it runs after the connection has left the
// Server, but not after Shutdown has returned.
func TestShutdownWaitsForOnClose(t *testing.T) {
	for _, mode := range []struct {
		name string
		h    ginws.Handler
	}{{"events", eventEcho}, {"loop", echoHandler}} {
		t.Run(mode.name, func(t *testing.T) {
			var ran, started atomic.Int32
			s := ginws.New()
			r := gin.New()
			s.Handle(r, "/ws", func(conn *ginws.Conn, c *gin.Context) error {
				conn.OnClose(func(*ginws.Conn, error) {
					started.Add(1)
					time.Sleep(300 * time.Millisecond) // a database write, say
					ran.Add(1)
				})
				return mode.h(conn, c)
			})
			ts := newServer(t, func(*gin.Engine, *ginws.Server) {})
			ts.Config.Handler = r
			const n = 3
			for range n {
				c := dial(t, ts.wsURL("/ws"), nil)
				go func() { c.expectClose() }()
			}
			require.Eventually(t, func() bool { return s.Len() == n }, 5*time.Second, time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, s.Shutdown(ctx))
			assert.EqualValues(t, n, ran.Load(), "OnClose calls finished when Shutdown returned (%d started)", started.Load())
			require.Eventually(t, func() bool { return ran.Load() == n }, 5*time.Second, time.Millisecond)
		})
	}
}

// A peer that answers every ping is not idle. While OnMessage takes a
// while (a slow query, longer than IdleTimeout), nobody reads the
// connection's pongs in events mode: the keepalive then drops a live
// peer as idle. A looping handler busy as long keeps its peer (the
// control pump reads the pongs), as PingInterval promises ("Pongs are
// read by whoever reads, or by ginws itself when the handler is not
// reading").
func TestEventSlowOnMessageKeepsLivePeer(t *testing.T) {
	const busy = 1500 * time.Millisecond
	slow := func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
		time.Sleep(busy)
		return conn.WriteMessage(context.Background(), t, p)
	}
	for _, mode := range []struct {
		name string
		h    ginws.Handler
	}{
		{"loop", func(conn *ginws.Conn, c *gin.Context) error {
			for {
				t, p, err := conn.ReadMessage(c)
				if err != nil {
					return err
				}
				if err := slow(conn, t, p); err != nil {
					return err
				}
			}
		}},
		{"events", func(conn *ginws.Conn, _ *gin.Context) error {
			conn.OnMessage(slow)
			return nil
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/ws", mode.h) },
				ginws.PingInterval(50*time.Millisecond), ginws.IdleTimeout(400*time.Millisecond))
			starved := starvation(t) // a process stalled for the idle timeout drops a live peer
			c := dial(t, ts.wsURL("/ws"), nil)
			c.send(ws.OpText, []byte("slow"))
			// Answer every ping until the reply comes.
			for {
				f := c.readFrame()
				switch f.Header.OpCode {
				case ws.OpPing:
					c.send(ws.OpPong, f.Payload)
					continue
				case ws.OpClose:
					code, reason := ws.ParseCloseFrameData(f.Payload)
					timely(t, starved, 300*time.Millisecond, false, "closed %d %q while OnMessage was busy, the peer answering every ping", code, reason)
					return
				}
				assert.Equal(t, "slow", string(f.Payload))
				return
			}
		})
	}
}

// OnClose hears the error that ended the connection, also when a deadline
// ended it: a read deadline that passed in the middle of a message, a
// write deadline. The calls made after the end report only the end (a
// handler reading on after a timeout must not take it for one more), but
// OnClose is told how the connection ended, once, and a deadline is what
// a hook logging dropped or slow peers looks for.
func TestOnCloseHearsTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(conn *ginws.Conn) error
		peer func(c *client)
	}{{
		name: "read in a message",
		call: func(conn *ginws.Conn) error {
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _, err := conn.ReadMessage(context.Background())
			return err
		},
		peer: func(c *client) { c.sendFrame(false, ws.OpBinary, []byte("first half")) },
	}, {
		name: "write",
		call: func(conn *ginws.Conn) error {
			_ = conn.SetWriteDeadline(time.Now().Add(-time.Second))
			return conn.WriteMessage(context.Background(), ginws.MessageText, []byte("late"))
		},
		peer: func(*client) {},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var cl closes
			after := make(chan error, 1)
			sent := make(chan struct{}) // the peer's part is on its way
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
				s.Handle(r, "/h", cl.wrap(func(conn *ginws.Conn, _ *gin.Context) error {
					<-sent // so that a short deadline passes in the message, not before it
					if err := tc.call(conn); !assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "the call whose deadline passed") {
						return nil
					}
					_, _, err := conn.ReadMessage(context.Background())
					after <- err
					return err
				}))
			})
			c := dial(t, ts.wsURL("/h"), nil)
			tc.peer(c)
			close(sent)
			err := waitFor(t, after, 10*time.Second, "the read after the end")
			assert.ErrorIs(t, err, ginws.ErrClosed)
			assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "a call after the end")
			errs := cl.wait(t, 1)
			assert.ErrorIs(t, errs[0], ginws.ErrClosed)
			assert.ErrorIs(t, errs[0], os.ErrDeadlineExceeded, "OnClose: what ended the connection")
		})
	}
}
