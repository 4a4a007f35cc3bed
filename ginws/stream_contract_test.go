package ginws_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// A handler reads one compressed message through the byte stream (a
// subscription, say), then only writes. The Read returned all of the
// message, yet left it open: the control pump never starts, so the peer's
// pings (and its close) are never answered.
func TestStreamReadCompressedThenOnlyWrites(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/sub", func(conn *ginws.Conn, c *gin.Context) error {
			buf := make([]byte, 256)
			n, err := conn.Read(buf)
			if err != nil {
				return err
			}
			for {
				if err := conn.WriteMessage(c, ginws.MessageText, buf[:n]); err != nil {
					return err
				}
				time.Sleep(10 * time.Millisecond)
			}
		}, ginws.Compression(ginws.DeflateOptions{}))
	})
	c := deflDial(t, ts, "/sub", "permessage-deflate")
	require.NotEmpty(t, c.ext)
	c.sendZ(ws.OpText, []byte("subscribe"))
	_, p, _ := c.readMessage()
	require.Equal(t, "subscribe", string(p))
	time.Sleep(100 * time.Millisecond) // the handler is now a writer only
	c.write(maskedFrame(true, ws.OpPing, []byte("are you there")))
	deadline := time.Now().Add(10 * time.Second)
	for {
		require.True(t, time.Now().Before(deadline), "no pong in 10 s: nobody reads the peer's control frames")
		f := c.readFrame()
		if f.op == ws.OpPong {
			assert.Equal(t, "are you there", string(f.payload))
			break
		}
	}
	c.close()
}

// In object mode a Read/Write echo must keep one message one message: a
// message the peer sent in two fragments (both in hand at once) comes
// back as two messages, because each Read returns one fragment although
// the buffer holds the whole message.
func TestObjectModeReadReturnsWholeMessage(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/obj", func(conn *ginws.Conn, _ *gin.Context) error {
			buf := make([]byte, 1024)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return nil
				}
				if _, err := conn.Write(buf[:n]); err != nil {
					return err
				}
			}
		}, ginws.ObjectMode(true))
	})
	c := dial(t, ts.wsURL("/obj"), nil)
	msg := append(maskedFrame(false, ws.OpBinary, []byte("hello, ")), maskedFrame(true, ws.OpContinuation, []byte("world"))...)
	_, err := c.nc.Write(msg) // one write: the whole message is in hand
	require.NoError(t, err)
	c.send(ws.OpBinary, []byte("next"))
	_, p := c.readMessage()
	assert.Equal(t, "hello, world", string(p), "one message in, one message out")
	_, p = c.readMessage()
	assert.Equal(t, "next", string(p))
}

// In object mode, a message the peer abandoned (its close came between
// the fragments) must not read as a complete message followed by a clean
// io.EOF: ReadMessage reports it, and WriteTo drops it.
func TestObjectModeTruncatedMessageIsNotEOF(t *testing.T) {
	res := make(chan string, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/obj", func(conn *ginws.Conn, _ *gin.Context) error {
			b, err := io.ReadAll(conn)
			res <- fmt.Sprintf("%q, %v", b, err)
			return nil
		}, ginws.ObjectMode(true))
	})
	c := dial(t, ts.wsURL("/obj"), nil)
	c.sendFrame(false, ws.OpBinary, []byte(`{"amount": 100`))
	c.sendClose(ws.StatusNormalClosure, "")
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	select {
	case got := <-res:
		assert.Equal(t, `"{\"amount\": 100", unexpected EOF`, got, "half a message read as a whole one")
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not return")
	}
}

// A Write to a StreamText stream after Close must fail; one whose bytes
// are all held back (an incomplete rune) reports success, though they can
// never be sent.
func TestStreamTextWriteAfterCloseFails(t *testing.T) {
	res := make(chan string, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/text", func(conn *ginws.Conn, _ *gin.Context) error {
			_ = conn.Close()
			n, err := conn.Write([]byte("\xe2\x82"))
			res <- fmt.Sprintf("%d, %v", n, err != nil)
			return nil
		}, ginws.StreamText())
	})
	c := dial(t, ts.wsURL("/text"), nil)
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	select {
	case got := <-res:
		assert.Equal(t, "0, true", got, "Write after Close: n, err != nil")
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not return")
	}
}

// With StreamText, an incomplete rune held back at the end of a Write is
// dropped by Close, which reports success: bytes Write accepted are lost
// without an error anywhere.
func TestStreamTextCloseReportsHeldBackBytes(t *testing.T) {
	res := make(chan string, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/text", func(conn *ginws.Conn, _ *gin.Context) error {
			n, err := conn.Write([]byte("caf\xc3"))
			if err != nil || n != 4 {
				res <- fmt.Sprintf("Write: %d, %v", n, err)
				return nil
			}
			res <- fmt.Sprintf("Close: %v", conn.Close() != nil)
			return nil
		}, ginws.StreamText())
	})
	c := dial(t, ts.wsURL("/text"), nil)
	_, p := c.readMessage()
	assert.Equal(t, "caf", string(p))
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	select {
	case got := <-res:
		assert.Equal(t, "Close: true", got, "the held-back byte was dropped: Close must say so")
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not return")
	}
}

// Object mode and empty messages, as ObjectMode documents: Read has no
// bytes to return for one and skips it; WriteTo forwards it, so io.Copy
// from Conn to Conn keeps it.
func TestObjectModeEmptyMessages(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/read", func(conn *ginws.Conn, c *gin.Context) error {
			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if err != nil {
				return err
			}
			return conn.WriteMessage(c, ginws.MessageBinary, buf[:n])
		}, ginws.ObjectMode(true))
		s.Handle(r, "/copy", func(conn *ginws.Conn, _ *gin.Context) error {
			_, err := io.Copy(conn, conn)
			return err
		}, ginws.ObjectMode(true))
	})
	t.Run("Read skips", func(t *testing.T) {
		c := dial(t, ts.wsURL("/read"), nil)
		c.send(ws.OpBinary, nil)
		c.send(ws.OpBinary, []byte("after"))
		_, p := c.readMessage()
		assert.Equal(t, "after", string(p))
	})
	t.Run("WriteTo forwards", func(t *testing.T) {
		c := dial(t, ts.wsURL("/copy"), nil)
		c.send(ws.OpText, nil)
		c.send(ws.OpBinary, []byte("after"))
		op, p := c.readMessage()
		assert.Equal(t, ws.OpText, op)
		assert.Empty(t, p)
		op, p = c.readMessage()
		assert.Equal(t, ws.OpBinary, op)
		assert.Equal(t, "after", string(p))
	})
}

// With StreamText, a Write that ends in bytes no later Write can make
// valid (ED A0 begins a UTF-16 surrogate), or that cannot continue the
// character an earlier Write began (F0, then "A"), must fail with
// ErrNotUTF8 at once. Such bytes were held back as the start of a
// character and the Write reported success; the error came from a later
// Write instead, with n = 0 though its own bytes (a valid "ok") were fine.
func TestStreamTextWriteOfInvalidTailFails(t *testing.T) {
	cases := map[string]struct {
		writes []string
		want   string // per Write: n, errors.Is(err, ErrNotUTF8)
	}{
		"surrogate":       {[]string{"abc", "x\xed\xa0", "ok"}, "3 false, 0 true"},
		"held then ASCII": {[]string{"abc", "x\xf0", "A", "ok"}, "3 false, 2 false, 0 true"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res := make(chan string, 1)
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
				s.Handle(r, "/text", func(conn *ginws.Conn, _ *gin.Context) error {
					var got []string
					for _, w := range tc.writes {
						n, err := conn.Write([]byte(w))
						got = append(got, fmt.Sprintf("%d %v", n, errors.Is(err, ginws.ErrNotUTF8)))
						if err != nil {
							break
						}
					}
					res <- strings.Join(got, ", ")
					return nil
				}, ginws.StreamText())
			})
			c := dial(t, ts.wsURL("/text"), nil)
			_, p := c.readMessage()
			assert.Equal(t, "abc", string(p))
			select {
			case got := <-res:
				assert.Equal(t, tc.want, got)
			case <-time.After(10 * time.Second):
				t.Fatal("handler did not return")
			}
		})
	}
}

// A handler reads a request of known size through the byte stream, then
// only writes (a subscription). The request came as a fragmented message
// whose last frame is empty (coder/websocket's Writer ends every message
// so): the Read that returned its last bytes left the message open, the
// control pump never started while one was, and the peer's pings (sent
// after the message, or between its last two frames) went unanswered.
func TestStreamExactReadOfFragmentedMessageThenOnlyWrites(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/sub", func(conn *ginws.Conn, c *gin.Context) error {
			var req [9]byte
			if _, err := io.ReadFull(conn, req[:]); err != nil {
				return err
			}
			for {
				if err := conn.WriteMessage(c, ginws.MessageText, req[:]); err != nil {
					return err
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	})
	expectPong := func(t *testing.T, c *client) {
		t.Helper()
		c.send(ws.OpPing, []byte("are you there"))
		deadline := time.Now().Add(5 * time.Second)
		for {
			require.True(t, time.Now().Before(deadline), "no pong in 5 s: nobody reads the peer's control frames")
			f := c.readFrame()
			if f.Header.OpCode == ws.OpPong {
				assert.Equal(t, "are you there", string(f.Payload))
				return
			}
		}
	}
	first := maskedFrame(false, ws.OpText, []byte("subscribe"))
	last := maskedFrame(true, ws.OpContinuation, nil)
	t.Run("end in hand", func(t *testing.T) {
		c := dial(t, ts.wsURL("/sub"), nil)
		_, err := c.nc.Write(append(first, last...))
		require.NoError(t, err)
		_, p := c.readMessage()
		require.Equal(t, "subscribe", string(p))
		time.Sleep(100 * time.Millisecond) // the handler is now a writer only
		expectPong(t, c)
		c.sendClose(ws.StatusNormalClosure, "")
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusNormalClosure, code)
	})
	t.Run("ping before the end", func(t *testing.T) {
		c := dial(t, ts.wsURL("/sub"), nil)
		_, err := c.nc.Write(first)
		require.NoError(t, err)
		_, p := c.readMessage()
		require.Equal(t, "subscribe", string(p))
		time.Sleep(100 * time.Millisecond)
		expectPong(t, c)
		_, err = c.nc.Write(last)
		require.NoError(t, err)
		expectPong(t, c)
		c.sendClose(ws.StatusNormalClosure, "")
		code, _ := c.expectClose()
		assert.Equal(t, ws.StatusNormalClosure, code)
	})
}
