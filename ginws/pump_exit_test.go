package ginws_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// The control pump runs for a handler that wrote well after its last read.
// The handler reads again: the read call takes the read side and the pump
// leaves. If the read returns and the handler writes (within pumpDelay, so
// this write does not start a pump of its own) before the leaving pump has
// taken its flag down, the write finds the flag set. The handler then only
// waits: the peer's close must still be answered. The hook holds the pump
// in its exit, flag set, for as long as the test needs to reach that
// moment, which otherwise lasts a few instructions; the ping makes sure
// the pump holds the read side when the handler reads.
func TestWriteWhilePumpLeaves(t *testing.T) {
	var armed atomic.Bool
	pumping := make(chan struct{}) // the client saw the pump answer a ping
	leaving := make(chan struct{})
	release := make(chan struct{})
	ginws.SetPumpExitHook(t, func() {
		if armed.CompareAndSwap(true, false) {
			close(leaving)
			<-release
		}
	})
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ack", func(conn *ginws.Conn, c *gin.Context) error {
			if _, _, err := conn.ReadMessage(c); err != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond) // well past pumpDelay: this write starts the pump
			armed.Store(true)
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("ready")); err != nil {
				return err
			}
			<-pumping
			_, _, err := conn.ReadMessage(c) // takes the read side from the pump
			if err != nil {
				return err
			}
			select {
			case <-leaving:
			case <-time.After(10 * time.Second):
				close(release)
				return nil // the pump never left: the test fails below
			}
			err = conn.WriteMessage(c, ginws.MessageText, []byte("subscribed"))
			close(release)
			if err != nil {
				return err
			}
			<-conn.Done()
			return nil
		})
	})
	c := dial(t, ts.wsURL("/ack"), nil)
	c.send(ws.OpText, []byte("hello"))
	_, p := c.readMessage()
	require.Equal(t, "ready", string(p))
	c.send(ws.OpPing, []byte("pump?"))
	f := c.readFrame()
	require.Equal(t, ws.OpPong, f.Header.OpCode, "the pump answers while the handler does not read")
	close(pumping)
	c.send(ws.OpText, []byte("subscribe"))
	_, p = c.readMessage()
	require.Equal(t, "subscribed", string(p))
	c.sendClose(ws.StatusNormalClosure, "")
	code, _ := c.expectClose()
	require.Equal(t, ws.StatusNormalClosure, code)
}
