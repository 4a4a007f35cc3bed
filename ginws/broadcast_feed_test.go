package ginws_test

import (
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// TestBroadcastOnlyHandlerAnswersClose: a feed handler joins a room and
// waits for the end, everything it sends coming from Broadcast. The
// connection only writes, so ginws must answer the peer's pings and
// complete the close handshake for it (doc.go, "Concurrency" and
// "Goroutines": the pump runs after a write), as it does after a
// WriteMessage (ExampleServer_Shutdown).
func TestBroadcastOnlyHandlerAnswersClose(t *testing.T) {
	ended := make(chan struct{}, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/feed", func(conn *ginws.Conn, c *gin.Context) error {
			conn.Join("news")
			<-conn.Done()
			ended <- struct{}{}
			return nil
		})
	})
	c := dial(t, ts.wsURL("/feed"), nil)
	require.Eventually(t, func() bool { return ts.ws.Count(ginws.ToRoom("news")) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 1, ts.ws.Broadcast(ginws.ToRoom("news"), ginws.MessageText, []byte("headline")))
	op, p := c.readMessage()
	require.Equal(t, ws.OpText, op)
	require.Equal(t, "headline", string(p))
	time.Sleep(100 * time.Millisecond) // past the pump's 50 ms delay

	c.send(ws.OpPing, []byte("are you there"))
	f, err := readFrameErr(c, 10*time.Second)
	require.NoError(t, err, "the ping is never answered")
	assert.Equal(t, ws.OpPong, f.Header.OpCode)
	assert.Equal(t, "are you there", string(f.Payload))

	c.sendClose(ws.StatusNormalClosure, "")
	f, err = readFrameErr(c, 10*time.Second)
	require.NoError(t, err, "the close is never answered")
	require.Equal(t, ws.OpClose, f.Header.OpCode)
	waitFor(t, ended, 10*time.Second, "the handler to return")
}

// TestSubscribeAckThenWaitAnswersClose: a handler reads a subscription,
// joins its room, acknowledges it at once and from then on only waits,
// fed by broadcasts. Its only write came moments after its read, so the
// control pump was never started: the peer's close went unanswered and
// the connection stayed in its room (and in Len) for as long as no
// broadcast came. The Conn doc promises the close handshake is completed
// when no read is in progress and the handler writes.
func TestSubscribeAckThenWaitAnswersClose(t *testing.T) {
	ended := make(chan struct{}, 1)
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/sub", func(conn *ginws.Conn, c *gin.Context) error {
			_, room, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			conn.Join(string(room))
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("subscribed")); err != nil {
				return err
			}
			<-conn.Done()
			ended <- struct{}{}
			return nil
		})
	})
	c := dial(t, ts.wsURL("/sub"), nil)
	c.send(ws.OpText, []byte("news"))
	_, p := c.readMessage()
	require.Equal(t, "subscribed", string(p))
	require.Equal(t, 1, ts.ws.Count(ginws.ToRoom("news")))

	c.send(ws.OpPing, []byte("are you there"))
	f, err := readFrameErr(c, 10*time.Second)
	require.NoError(t, err, "the ping is never answered")
	assert.Equal(t, ws.OpPong, f.Header.OpCode)
	c.sendClose(ws.StatusNormalClosure, "")
	f, err = readFrameErr(c, 10*time.Second)
	require.NoError(t, err, "the close is never answered")
	require.Equal(t, ws.OpClose, f.Header.OpCode)
	waitFor(t, ended, 10*time.Second, "the handler to return")
	assert.Equal(t, 0, ts.ws.Count(ginws.ToRoom("news")), "the ended connection is still in its room")
}
