package ginws_test

import (
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// TestStreamEOFIsNotAFailure: the byte stream reads a normal close by the
// peer as io.EOF, and a handler that decodes from the Conn returns it as
// json.Decoder, like most readers, hands it on. That only tells how the
// connection ended, as a *CloseError from ReadMessage does: it is not
// reported to the ErrorHandler. It used to be, and the default one logged
// "EOF" at every normal close. An io.EOF returned while the connection is
// open (from some other reader) is still a failure.
func TestStreamEOFIsNotAFailure(t *testing.T) {
	reports := make(chan error, 2)
	returned := make(chan error, 2)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/decode", func(conn *ginws.Conn, _ *gin.Context) error {
			dec := json.NewDecoder(conn)
			for {
				var v map[string]any
				if err := dec.Decode(&v); err != nil {
					returned <- err
					return err
				}
			}
		})
		s.Handle(r, "/late", func(conn *ginws.Conn, _ *gin.Context) error {
			// A write fails first (its deadline has passed), which ends
			// the connection; what had arrived is still read, up to the
			// peer's close.
			var b [1]byte
			if _, err := conn.Read(b[:]); err != nil {
				return err
			}
			_ = conn.SetWriteDeadline(time.Now().Add(-time.Second))
			if _, err := conn.Write([]byte("late")); err == nil {
				return errors.New("a write past its deadline succeeded")
			}
			_, err := io.Copy(io.Discard, struct{ io.Reader }{conn})
			if err == nil {
				err = io.EOF // what the Reads ended with
			}
			returned <- err
			return err
		})
		s.Handle(r, "/other", func(*ginws.Conn, *gin.Context) error {
			returned <- io.EOF
			return io.EOF // not the Conn's: the connection is open
		})
	}, ginws.ErrorHandler(func(err error, _ *ginws.Conn, _ *gin.Context) { reports <- err }))

	c := dial(t, ts.wsURL("/decode"), nil)
	c.send(ws.OpText, []byte(`{"op":"hello"}`))
	c.sendClose(ws.StatusNormalClosure, "")
	code, _ := c.expectClose()
	assert.Equal(t, ws.StatusNormalClosure, code)
	require.Equal(t, io.EOF, waitFor(t, returned, 10*time.Second, "the handler's return"))

	c = dial(t, ts.wsURL("/late"), nil)
	_, err := c.nc.Write(append(maskedFrame(true, ws.OpText, []byte("hello")),
		maskedFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))...))
	require.NoError(t, err)
	require.Equal(t, io.EOF, waitFor(t, returned, 10*time.Second, "the handler's return"))

	c = dial(t, ts.wsURL("/other"), nil)
	require.Equal(t, io.EOF, waitFor(t, returned, 10*time.Second, "the handler's return"))
	code, _ = c.expectClose()
	assert.Equal(t, ws.StatusCode(ginws.StatusInternalError), code, "a handler that failed")

	require.NoError(t, ts.ws.Shutdown(testCtx(t))) // waits for the handlers' ends
	require.Len(t, reports, 1, "reported: the /decode or /late handler's normal end, or not the /other handler's failure")
	assert.Equal(t, io.EOF, <-reports)
}
