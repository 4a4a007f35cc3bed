//go:build !noginws

package main

import (
	"context"

	"github.com/gin-gonic/gin"
	"github.com/ginws/ginws/ginws"
)

func init() {
	register("ginws", "github.com/ginws/ginws", func(r *gin.Engine) {
		srv := ginws.New(ginws.MaxPayload(maxMessageSize))
		if graceful {
			// As the example server does: 1001 to every connection.
			shutdownHooks = append(shutdownHooks, func(ctx context.Context) (int, error) {
				n := srv.Len()
				return n, srv.Shutdown(ctx)
			})
		}
		srv.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
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
		})
	})
}
