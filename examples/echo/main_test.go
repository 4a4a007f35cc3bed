package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ginws/ginws/ginws"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChat checks the room: a text message reaches every member.
func TestChat(t *testing.T) {
	gin.SetMode(gin.TestMode)
	s := ginws.New()
	r := gin.New()
	routes(r, s)
	ts := httptest.NewServer(r)
	defer ts.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/chat"

	a, _, _, err := ws.Dial(context.Background(), url)
	require.NoError(t, err)
	defer a.Close()
	b, _, _, err := ws.Dial(context.Background(), url)
	require.NoError(t, err)
	defer b.Close()
	require.Eventually(t, func() bool { return s.Len() == 2 }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, wsutil.WriteClientText(a, []byte("hello room")))
	for _, c := range []interface{ SetReadDeadline(time.Time) error }{a, b} {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	}
	for _, c := range []struct {
		name string
		conn interface {
			Read([]byte) (int, error)
			Write([]byte) (int, error)
		}
	}{{"sender", a}, {"other", b}} {
		msg, op, err := wsutil.ReadServerData(c.conn)
		require.NoError(t, err, c.name)
		require.Equal(t, ws.OpText, op)
		require.Equal(t, "hello room", string(msg), c.name)
	}
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return s.Len() == 0 }, 5*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}
