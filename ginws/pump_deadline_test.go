package ginws_test

import (
	"io"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// A handler that reads its first message under a read deadline (a login
// timeout, say) and from then on only writes: the deadline bounded that
// read call, not the control pump that reads for the handler afterwards.
// Once it has passed, the peer's pings must still be answered.
func TestPumpOutlivesReadDeadline(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/push", func(conn *ginws.Conn, c *gin.Context) error {
			deadline := time.Now().Add(50 * time.Millisecond)
			if err := conn.SetReadDeadline(deadline); err != nil {
				return err
			}
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
			time.Sleep(time.Until(deadline) + 10*time.Millisecond) // the deadline has passed
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("ready")); err != nil {
				return err
			}
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-conn.Done():
					return nil
				case <-tick.C:
					if err := conn.WriteMessage(c, ginws.MessageText, []byte("tick")); err != nil {
						return nil // the peer closed
					}
				}
			}
		})
	})
	c := dial(t, ts.wsURL("/push"), nil)
	c.send(ws.OpText, []byte("login"))
	_, p := c.readMessage()
	require.Equal(t, "ready", string(p))
	c.send(ws.OpPing, []byte("still there?"))
	bound := time.Now().Add(10 * time.Second) // a hang, not a timing assertion
	for {
		require.True(t, time.Now().Before(bound), "the ping was never answered")
		f := c.readFrame()
		if f.Header.OpCode == ws.OpPong {
			require.Equal(t, "still there?", string(f.Payload))
			break
		}
	}
	c.sendClose(ws.StatusNormalClosure, "")
	code, _ := c.expectClose()
	require.Equal(t, ws.StatusNormalClosure, code)
}

// The gorilla-style write: a write deadline set before each WriteMessage
// and left armed after it. It bounds the handler's write calls; the
// keepalive's pings, sent once it has passed, must not time out on it and
// drop a healthy connection.
func TestKeepaliveOutlivesWriteDeadline(t *testing.T) {
	passed := make(chan struct{})
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/feed", func(conn *ginws.Conn, c *gin.Context) error {
			deadline := time.Now().Add(50 * time.Millisecond)
			if err := conn.SetWriteDeadline(deadline); err != nil {
				return err
			}
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("hi")); err != nil {
				return err
			}
			time.Sleep(time.Until(deadline) + 10*time.Millisecond)
			close(passed)
			for {
				if _, _, err := conn.ReadMessage(c); err != nil {
					return err
				}
			}
		}, ginws.PingInterval(100*time.Millisecond))
	})
	c := dial(t, ts.wsURL("/feed"), nil)
	_, p := c.readMessage()
	require.Equal(t, "hi", string(p))
	<-passed
	// Pings sent before the deadline passed may be in flight: wait for
	// two after it, then close normally.
	for pings := 0; pings < 3; {
		f := c.readFrame() // fails on the server dropping the connection
		require.Equal(t, ws.OpPing, f.Header.OpCode)
		pings++
	}
	c.sendClose(ws.StatusNormalClosure, "")
	code, _ := c.expectClose()
	require.Equal(t, ws.StatusNormalClosure, code)
}

// A handler that has begun a message with NextReader and stops reading it
// for a while (the bytes it read go to slow storage, say), while the peer
// answers every ping: the pongs queue behind the rest of the message,
// unread, as behind a message the pump left for the handler
// (TestIdleTimeoutWriteOnlyHandlerUnreadMessage). IdleTimeout must not
// take that peer for silent.
func TestIdleTimeoutHandlerPausedInsideMessage(t *testing.T) {
	needTCPInfo(t)
	resume := make(chan struct{})
	results := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/upload", func(conn *ginws.Conn, c *gin.Context) error {
			_, rd, err := conn.NextReader(c)
			if err == nil {
				_, err = rd.Read(make([]byte, 1))
			}
			if err == nil {
				select { // the slow work
				case <-resume:
				case <-conn.Done():
				}
				var rest []byte
				if rest, err = io.ReadAll(rd); err == nil {
					err = conn.WriteMessage(c, ginws.MessageText, rest)
				}
			}
			results <- err
			if err != nil {
				return err
			}
			return echoHandler(conn, c)
		}, ginws.PingInterval(100*time.Millisecond), ginws.IdleTimeout(600*time.Millisecond))
	})
	starved := starvation(t)
	p := startPongClient(dial(t, ts.wsURL("/upload"), nil))
	require.NoError(t, p.write(ws.OpText, []byte("abc")))
	select {
	case err := <-results:
		timely(t, starved, 200*time.Millisecond, false, "dropped although it answers every ping (%d pings): %v", p.pings.Load(), err)
		return
	case <-time.After(2 * time.Second):
	}
	close(resume)
	require.NoError(t, waitFor(t, results, 10*time.Second, "the handler's read"))
	f := waitFor(t, p.frames, 10*time.Second, "the rest of the message")
	require.Equal(t, "bc", string(f.Payload))
	p.closeNormally(t)
}
