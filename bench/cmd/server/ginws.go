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
