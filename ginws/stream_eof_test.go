package ginws_test

import (
	"encoding/json"
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

	c = dial(t, ts.wsURL("/other"), nil)
	require.Equal(t, io.EOF, waitFor(t, returned, 10*time.Second, "the handler's return"))
	code, _ = c.expectClose()
	assert.Equal(t, ws.StatusCode(ginws.StatusInternalError), code, "a handler that failed")

	require.NoError(t, ts.ws.Shutdown(testCtx(t))) // waits for the handlers' ends
	require.Len(t, reports, 1, "reported: the /decode handler's normal end, or not the /other handler's failure")
	assert.Equal(t, io.EOF, <-reports)
}
