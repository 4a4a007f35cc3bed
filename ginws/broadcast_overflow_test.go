package ginws_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// TestOverflowThenPeerAnswersWriteError: a slow peer overflows its send
// queue and is sent 1008; it answers the close. From then on, the
// handler's calls return the peer's *CloseError (doc.go, "Errors": calls
// on a connection this side has closed return ErrClosed until the peer has
// answered the close, and the peer's *CloseError from then on).
func TestOverflowThenPeerAnswersWriteError(t *testing.T) {
	type res struct{ read, write error }
	results := make(chan res, 1)
	r := gin.New()
	s := ginws.New(ginws.SendQueue(8))
	shutdownAtEnd(t, s)
	s.Handle(r, "/slow", func(conn *ginws.Conn, c *gin.Context) error {
		_, _, rerr := conn.ReadMessage(context.Background())
		werr := conn.WriteMessage(context.Background(), ginws.MessageText, []byte("late"))
		results <- res{rerr, werr}
		return nil
	})
	url := smallBufferServer(t, r, "/slow")
	c := dialSlowReader(t, url, 4<<10)
	require.Eventually(t, func() bool { return s.Len() == 1 }, 5*time.Second, 5*time.Millisecond)
	msg := make([]byte, 4<<10)
	for i := 0; s.Broadcast(ginws.ToAll(), ginws.MessageBinary, msg) == 1; i++ {
		require.Less(t, i, 100000, "no overflow")
	}
	code, reason := c.expectClose() // reads the rest, answers, waits for EOF
	assert.Equal(t, ws.StatusPolicyViolation, code)
	assert.Equal(t, "too slow", reason)
	got := waitFor(t, results, 10*time.Second, "the handler")
	var ce *ginws.CloseError
	assert.True(t, errors.As(got.read, &ce), "read: %v", got.read)
	assert.True(t, errors.As(got.write, &ce), "write after the peer answered: %T %v", got.write, got.write)
}
