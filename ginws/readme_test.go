package ginws_test

import (
	"context"
	"io"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/ginwstest"
)

// The README's snippets, copied as they are, compile and run.
func readmeThreeLines() *gin.Engine {
	r := gin.Default()
	ginws.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
		_, err := io.Copy(conn, conn) // a Conn is an io.ReadWriteCloser
		return err
	})
	// r.Run("127.0.0.1:8080")
	return r
}

func readmeAPITour() (*gin.Engine, *ginws.Server) {
	authMiddleware := func(c *gin.Context) { c.Set("user", "ann") }
	ws := ginws.New(ginws.MaxPayload(1 << 20)) // options for every route
	r := gin.New()
	r.Use(gin.Recovery(), ws.Middleware()) // before routes: see "Default handler"

	api := r.Group("/api", authMiddleware) // middleware runs before the upgrade
	ws.Handle(api, "/chat", func(conn *ginws.Conn, c *gin.Context) error {
		user := c.GetString("user") // values set by middleware
		_ = user
		for {
			typ, msg, err := conn.ReadMessage(c) // whole message; slice valid until next read
			if err != nil {
				return err // *ginws.CloseError when the peer closed
			}
			if err := conn.WriteMessage(c, typ, msg); err != nil {
				return err
			}
		}
	}, ginws.Subprotocols("chat.v1")) // per-route options on top of the Server's

	ws.Handle(r, "/chat", func(conn *ginws.Conn, c *gin.Context) error {
		conn.Set("user", c.GetString("user"))
		conn.Join("lobby")
		for {
			_, msg, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			ws.Broadcast(ginws.ToRoom("lobby"), ginws.MessageText, msg)
		}
	})

	ws.Handle(api, "/feed", func(conn *ginws.Conn, c *gin.Context) error {
		conn.Join("user:" + c.GetString("user"))
		conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
			return conn.WriteMessage(context.Background(), t, p) // p is valid until f returns
		})
		return nil
	})
	return r, ws
}

func TestReadmeSnippets(t *testing.T) {
	gin.SetMode(gin.TestMode)
	ctx := testCtx(t)
	r := readmeThreeLines()
	c, _, err := ginwstest.Dial(ctx, r, "/echo")
	require.NoError(t, err)
	require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("x")))
	_, m, err := c.ReadMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, "x", string(m))
	require.NoError(t, c.Close())

	r, ws := readmeAPITour()
	for _, p := range []string{"/api/chat", "/chat", "/api/feed"} {
		c, _, err := ginwstest.Dial(ctx, r, p, ginwstest.Subprotocols("chat.v1"))
		require.NoError(t, err, p)
		require.NoError(t, c.WriteMessage(ctx, ginws.MessageText, []byte("y")))
		_, m, err := c.ReadMessage(ctx)
		require.NoError(t, err, p)
		require.Equal(t, "y", string(m))
		require.NoError(t, c.Close())
	}
	require.NoError(t, ws.Shutdown(ctx))
}
