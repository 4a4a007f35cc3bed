package ginws_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// The handler closes; while Close reads up to the peer's answer, the peer
// (which had not seen the close yet) sends a frame that breaks the
// protocol, followed by more than the socket buffers hold. The connection
// is failed, and must be drained to the peer's end (the lingering close,
// as after a protocol error met by a read call) instead of closed under
// the peer's unread bytes: a reset fails the peer's write in progress and
// may destroy the close frame before the peer reads it.
func TestCloseThenProtocolErrorLingers(t *testing.T) {
	start := make(chan struct{})
	closed := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/close", func(conn *ginws.Conn, c *gin.Context) error {
			<-start
			closed <- conn.Close()
			return nil
		})
	})
	c := dial(t, ts.wsURL("/close"), nil)
	junk := append(maskedFrame(true, 3, nil), make([]byte, 32<<20)...)
	wrote := make(chan error, 1)
	go func() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := c.nc.Write(junk)
		wrote <- err
	}()
	close(start)
	select {
	case err := <-wrote:
		require.NoError(t, err, "the server reset the connection instead of draining it")
	case <-time.After(30 * time.Second):
		t.Fatal("write hangs")
	}
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	waitFor(t, closed, 10*time.Second, "Close")
}

// The same with the control pump reading when Close comes: the handler
// only wrote, so the pump holds the read side and Close waits for it to
// read the answer. The peer answers with a frame that breaks the protocol
// and more than the socket buffers hold: the pump fails the connection,
// and nobody drains it; Close waits out the close timeout and resets the
// connection under the peer's write.
func TestCloseWhilePumpReadsThenProtocolErrorLingers(t *testing.T) {
	closed := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/close", func(conn *ginws.Conn, c *gin.Context) error {
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("hi")); err != nil {
				return err
			}
			time.Sleep(200 * time.Millisecond) // past pumpDelay: the pump reads
			closed <- conn.Close()
			return nil
		})
	})
	c := dial(t, ts.wsURL("/close"), nil)
	_, p := c.readMessage()
	require.Equal(t, "hi", string(p))
	for {
		f := c.readFrame()
		if f.Header.OpCode == ws.OpClose {
			break
		}
	}
	junk := append(maskedFrame(true, 3, nil), make([]byte, 32<<20)...)
	wrote := make(chan error, 1)
	go func() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := c.nc.Write(junk)
		wrote <- err
	}()
	select {
	case err := <-wrote:
		require.NoError(t, err, "the server reset the connection instead of draining it")
	case <-time.After(30 * time.Second):
		t.Fatal("write hangs")
	}
	_ = c.nc.Close()
	waitFor(t, closed, 10*time.Second, "Close")
}

// In object mode a normal close in the middle of a message is
// io.ErrUnexpectedEOF for Read (Conn.Read). A handler that read the start
// of the message with Read and hands the rest to io.Copy (WriteTo copies
// "what is left of a message that Read had begun") must not see the
// truncated message end cleanly: it already holds half of it.
func TestObjectModeWriteToAfterPartialReadReportsTruncation(t *testing.T) {
	res := make(chan string, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/obj", func(conn *ginws.Conn, _ *gin.Context) error {
			var head [4]byte
			n, err := conn.Read(head[:])
			if err != nil {
				res <- fmt.Sprintf("Read: %v", err)
				return nil
			}
			var rest bytes.Buffer
			_, err = io.Copy(&rest, conn)
			res <- fmt.Sprintf("%q + %q, %v", head[:n], rest.String(), err)
			return nil
		}, ginws.ObjectMode(true))
	})
	c := dial(t, ts.wsURL("/obj"), nil)
	c.sendFrame(false, ws.OpBinary, []byte(`{"amount": 100`))
	c.sendClose(ws.StatusNormalClosure, "")
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	got := waitFor(t, res, 10*time.Second, "the handler")
	assert.Equal(t, `"{\"am" + "", unexpected EOF`, got, "half a message read as a whole one")
}
