//go:build linux

package ginws

import (
	"context"
	"math"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPollerIDWrapSkipsLiveIDs: when the poller's ids wrap around, the id
// of a connection still registered is not handed out again, so each
// connection's messages still reach its own OnMessage.
func TestPollerIDWrapSkipsLiveIDs(t *testing.T) {
	s := New()
	r := gin.New()
	s.Handle(r, "/events", func(conn *Conn, _ *gin.Context) error {
		conn.OnMessage(func(conn *Conn, mt MessageType, p []byte) error {
			return conn.WriteMessage(context.Background(), mt, p)
		})
		return nil
	})
	hs := httptest.NewServer(r)
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/events"

	echo := func(nc net.Conn, msg string) string {
		t.Helper()
		require.NoError(t, nc.SetDeadline(time.Now().Add(10*time.Second)))
		require.NoError(t, wsutil.WriteClientText(nc, []byte(msg)))
		got, err := wsutil.ReadServerText(nc)
		require.NoError(t, err)
		return string(got)
	}

	first, _, _, err := ws.Dial(context.Background(), url)
	require.NoError(t, err)
	defer first.Close()
	assert.Equal(t, "first", echo(first, "first")) // registered, idle in the poller

	s.poll.mu.Lock()
	var firstID uint32
	for id := range s.poll.conns {
		firstID = id
	}
	s.poll.nextID = math.MaxUint32 - 1
	s.poll.conns[math.MaxUint32] = nil // a live id just before the wrap
	s.poll.mu.Unlock()
	require.Equal(t, uint32(1), firstID)

	second, _, _, err := ws.Dial(context.Background(), url)
	require.NoError(t, err)
	defer second.Close()
	assert.Equal(t, "second", echo(second, "second"))

	s.poll.mu.Lock()
	delete(s.poll.conns, math.MaxUint32)
	ids := make([]uint32, 0, 2)
	for id := range s.poll.conns {
		ids = append(ids, id)
	}
	s.poll.mu.Unlock()
	assert.ElementsMatch(t, []uint32{1, 2}, ids, "the newcomer skips 0, the taken MaxUint32 and 1")

	// Both connections, idle in the poller, are woken for their own
	// messages.
	for range 3 {
		assert.Equal(t, "to first", echo(first, "to first"))
		assert.Equal(t, "to second", echo(second, "to second"))
	}
	_ = first.Close()
	_ = second.Close()
	require.NoError(t, s.Shutdown(context.Background()))
}
