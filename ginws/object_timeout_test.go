package ginws_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// TestObjectModeReadTimeoutMidMessageEnds: in object mode a Read returns
// one message (when it fits p). A read deadline that passed with part of
// a message returned used to leave the connection usable, and the next
// Read returned the rest of the message as if it were a whole one. The
// SetReadDeadline doc says a timeout in the middle of a message ends the
// connection: the next Read must fail instead.
func TestObjectModeReadTimeoutMidMessageEnds(t *testing.T) {
	type result struct {
		n   int
		p   string
		err error
	}
	results := make(chan result, 2)
	sendRest := make(chan struct{})
	sentHead := make(chan struct{}) // the first part is on its way
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/object", func(conn *ginws.Conn, c *gin.Context) error {
			buf := make([]byte, 64)
			<-sentHead // so that the deadline passes in the message, not before it
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := conn.Read(buf)
			results <- result{n, string(buf[:n]), err}
			_ = conn.SetReadDeadline(time.Time{})
			<-sendRest
			n, err = conn.Read(buf)
			results <- result{n, string(buf[:n]), err}
			return nil
		}, ginws.ObjectMode(true))
	})
	c := dial(t, ts.wsURL("/object"), nil)
	frame := maskedFrame(true, ws.OpBinary, []byte("0123456789"))
	head := len(frame) - 10
	_, err := c.nc.Write(frame[:head+4]) // the header and 4 of the 10 bytes
	require.NoError(t, err)
	close(sentHead)

	first := waitFor(t, results, 10*time.Second, "the first Read")
	require.ErrorIs(t, first.err, os.ErrDeadlineExceeded)
	assert.Equal(t, "0123", first.p, "the bytes that came before the deadline")

	_, err = c.nc.Write(frame[head+4:])
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Logf("the rest of the message could not be sent: %v", err)
	}
	close(sendRest)
	second := waitFor(t, results, 10*time.Second, "the second Read")
	assert.Error(t, second.err, "the tail of a message came back as a message of its own: %q", second.p)
	assert.Zero(t, second.n)
}
