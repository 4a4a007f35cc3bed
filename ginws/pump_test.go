package ginws_test

import (
	"context"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// What a handler's contexts and the control pump leave behind them: a
// control frame cut short, a context that ends after its call returned, a
// close answered behind a data message.

// A ping whose header has arrived but not its payload, while the pump
// reads for a handler that has only written so far. The handler's next
// read kicks the pump out of its read (a deadline in the past): that must
// not end the connection, and the ping is answered once it is whole.
func TestPumpKickedInsideControlFrame(t *testing.T) {
	readNow := make(chan struct{})
	handlerErr := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/w", func(conn *ginws.Conn, c *gin.Context) error {
			// A writer first: the pump starts reading control frames.
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("hello")); err != nil {
				return err
			}
			<-readNow
			err := echoHandler(conn, c)
			handlerErr <- err
			return err
		})
	})
	c := dial(t, ts.wsURL("/w"), nil)
	_, p := c.readMessage()
	require.Equal(t, "hello", string(p))
	ping := maskedFrame(true, ws.OpPing, []byte("ping!"))
	const headerLen = 6
	_, err := c.nc.Write(ping[:headerLen]) // the pump reads the header, waits for the payload
	require.NoError(t, err)
	time.Sleep(150 * time.Millisecond)
	close(readNow) // the handler reads: the pump is kicked out
	time.Sleep(150 * time.Millisecond)
	_, err = c.nc.Write(append(ping[headerLen:], maskedFrame(true, ws.OpText, []byte("still here"))...))
	require.NoError(t, err)
	select {
	case err := <-handlerErr:
		t.Fatalf("handler's read failed: %v", err)
	default:
	}
	var gotPong bool
	for {
		f := c.readFrame()
		if f.Header.OpCode == ws.OpPong {
			gotPong = true
			continue
		}
		require.Equal(t, ws.OpText, f.Header.OpCode)
		assert.Equal(t, "still here", string(f.Payload))
		break
	}
	assert.True(t, gotPong)
}

// ReadMessage's promise: when ctx ends before a message has begun, the
// connection stays usable. Here ctx ends while a ping is half received.
func TestReadContextEndsInsideControlFrame(t *testing.T) {
	firstErr := make(chan error, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/patient", func(conn *ginws.Conn, c *gin.Context) error {
			ctx, cancel := context.WithTimeout(c, 100*time.Millisecond)
			_, _, err := conn.ReadMessage(ctx)
			cancel()
			firstErr <- err
			return echoHandler(conn, c)
		})
	})
	c := dial(t, ts.wsURL("/patient"), nil)
	ping := maskedFrame(true, ws.OpPing, []byte("ping!"))
	const headerLen = 6
	_, err := c.nc.Write(ping[:headerLen])
	require.NoError(t, err)
	require.ErrorIs(t, <-firstErr, context.DeadlineExceeded)
	_, err = c.nc.Write(append(ping[headerLen:], maskedFrame(true, ws.OpText, []byte("after the timeout"))...))
	require.NoError(t, err)
	for {
		f := c.readFrame()
		if f.Header.OpCode == ws.OpPong {
			continue
		}
		require.Equal(t, ws.OpText, f.Header.OpCode)
		assert.Equal(t, "after the timeout", string(f.Payload))
		break
	}
}
