//go:build !noginws

package main

import (
	"context"

	"github.com/gin-gonic/gin"
	"github.com/ginws/ginws/ginws"
)

func init() {
	// ginws: the handler's goroutine reads and echoes for the whole life of
	// the connection.
	register("ginws", "github.com/ginws/ginws", ginwsMount(func(conn *ginws.Conn, c *gin.Context) error {
		ctx := context.Background()
		for {
			t, p, err := conn.ReadMessage(ctx) // p is valid until the next read
			if err != nil {
				return nil
			}
			if err := conn.WriteMessage(ctx, t, p); err != nil {
				return err
			}
		}
	}))
	// ginws-events: the same library, event-driven. The handler sets the
	// callback and returns; the connection stays open, and on Linux an
	// idle one has no goroutine (the Server's poller watches its socket).
	register("ginws-events", "github.com/ginws/ginws", ginwsMount(func(conn *ginws.Conn, c *gin.Context) error {
		conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
			return conn.WriteMessage(context.Background(), t, p) // p is valid until the callback returns
		})
		return nil
	}))
}

// ginwsMount mounts h at /echo on a ginws Server with the benchmark's
// options.
func ginwsMount(h ginws.Handler) mount {
	return func(r *gin.Engine) {
		srv := ginws.New(ginws.MaxPayload(maxMessageSize))
		if graceful {
			// As the example server does: 1001 to every connection.
			shutdownHooks = append(shutdownHooks, func(ctx context.Context) (int, error) {
				n := srv.Len()
				return n, srv.Shutdown(ctx)
			})
		}
		// The Server counts its live connections: the scale mode checks
		// with it that every connection is held.
		connCount = srv.Len
		srv.Handle(r, "/echo", h)
	}
}
