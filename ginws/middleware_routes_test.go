package ginws_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/ginwstest"
)

// An application with two Servers (say, one per part of the API, each
// with its own options and its own Shutdown) and the Middleware of one of
// them, as the docs say, installed before the routes. The Middleware
// "routes upgrade requests that no WebSocket route will serve": an upgrade
// to a WebSocket route of the other Server is served by that route.
func TestMiddlewareWithSecondServer(t *testing.T) {
	public := ginws.New()
	admin := ginws.New(ginws.MaxPayload(1 << 10))
	r := gin.New()
	r.Use(public.Middleware())
	public.Handle(r, "/live", echoHandler)
	admin.Handle(r.Group("/admin"), "/ws", echoHandler)
	r.GET("/status", func(c *gin.Context) { c.String(http.StatusOK, "ok") })

	ctx := testCtx(t)
	for _, p := range []string{"/live", "/admin/ws"} {
		c, _, err := ginwstest.Dial(ctx, r, p)
		require.NoError(t, err, p)
		require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("ping")))
		_, got, err := c.ReadMessage(ctx)
		assert.NoError(t, err, "%s: the WebSocket route did not serve the upgrade", p)
		assert.Equal(t, "ping", string(got), p)
		_ = c.Close()
	}
}

// The same, with the package-level Handle of the README's "Three lines"
// and a Server of one's own for the DefaultHandler.
func TestMiddlewareWithPackageHandle(t *testing.T) {
	ws := ginws.New(ginws.DefaultHandler(func(conn *ginws.Conn, c *gin.Context) error {
		return conn.CloseWith(4004, "no WebSocket here")
	}))
	r := gin.New()
	r.Use(ws.Middleware())
	ginws.Handle(r, "/echo-default-server", echoHandler)

	ctx := testCtx(t)
	c, _, err := ginwstest.Dial(ctx, r, "/echo-default-server")
	require.NoError(t, err)
	require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("ping")))
	_, got, err := c.ReadMessage(ctx)
	assert.NoError(t, err, "the WebSocket route did not serve the upgrade")
	assert.Equal(t, "ping", string(got))
	_ = c.Close()
}

// One Server serving two engines (a public listener and an internal one):
// "/live" is a WebSocket route on the first and an HTTP-only route on the
// second. An upgrade to the second's HTTP-only route must not be served
// as HTTP.
func TestMiddlewareTwoEngines(t *testing.T) {
	ws := ginws.New()
	pub := gin.New()
	pub.Use(ws.Middleware())
	ws.Handle(pub, "/live", echoHandler)
	internal := gin.New()
	internal.Use(ws.Middleware())
	internal.GET("/live", func(c *gin.Context) { c.String(http.StatusOK, "metrics") })

	ctx := testCtx(t)
	c, resp, err := ginwstest.Dial(ctx, internal, "/live")
	require.NoError(t, err, "served as HTTP: %v", resp.Status)
	_, _, err = c.ReadMessage(ctx)
	assert.Equal(t, ginws.StatusPolicyViolation, ginws.CloseStatus(err))
	_ = c.Close()
}

// Event-driven: an OnMessage error goes to the ErrorHandler with a nil
// gin.Context and the connection is closed with 1011; OnClose hears it.
func TestEventsErrorHandler(t *testing.T) {
	type rep struct {
		err    error
		nilCtx bool
	}
	reps := make(chan rep, 1)
	closed := make(chan error, 1)
	boom := errors.New("boom")
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/ev", func(conn *ginws.Conn, c *gin.Context) error {
			conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
				if string(p) == "bad" {
					return boom
				}
				return conn.WriteMessage(context.Background(), t, p)
			})
			conn.OnClose(func(_ *ginws.Conn, err error) { closed <- err })
			return nil
		})
	}, ginws.ErrorHandler(func(err error, conn *ginws.Conn, c *gin.Context) {
		reps <- rep{err, c == nil}
	}))
	cl := dial(t, ts.wsURL("/ev"), nil)
	cl.send(1, []byte("hi"))
	_, got := cl.readMessage()
	assert.Equal(t, "hi", string(got))
	cl.send(1, []byte("bad"))
	code, _ := cl.expectClose()
	assert.EqualValues(t, 1011, code)
	select {
	case r := <-reps:
		assert.ErrorIs(t, r.err, boom)
		assert.True(t, r.nilCtx)
	case <-time.After(10 * time.Second):
		t.Fatal("no ErrorHandler call")
	}
	select {
	case err := <-closed:
		assert.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no OnClose")
	}
}

// Conn.Context carries the request context's values set by middleware.
func TestConnContextValues(t *testing.T) {
	type key struct{}
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), key{}, "trace-1"))
	})
	ws := ginws.New()
	ws.Handle(r, "/ctx", func(conn *ginws.Conn, c *gin.Context) error {
		ctx, cancel := context.WithTimeout(conn.Context(), 5*time.Second)
		defer cancel()
		v, _ := ctx.Value(key{}).(string)
		return conn.WriteMessage(ctx, ginws.MessageText, []byte(v))
	})
	ctx := testCtx(t)
	c, _, err := ginwstest.Dial(ctx, r, "/ctx")
	require.NoError(t, err)
	_, got, err := c.ReadMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "trace-1", string(got))
	_ = c.Close()
}
