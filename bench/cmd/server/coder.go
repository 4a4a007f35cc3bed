package main

import (
	"context"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"
)

func init() {
	register("coder", "github.com/coder/websocket", func(r *gin.Engine) {
		opts := &websocket.AcceptOptions{
			InsecureSkipVerify: true, // no origin check
			CompressionMode:    websocket.CompressionDisabled,
		}
		r.GET("/echo", func(c *gin.Context) {
			conn, err := websocket.Accept(c.Writer, c.Request, opts)
			if err != nil {
				return
			}
			defer conn.CloseNow()
			conn.SetReadLimit(maxMessageSize)
			ctx := context.Background()
			var buf []byte // grown by readInto at the first message: idle connections have none
			for {
				t, rd, err := conn.Reader(ctx)
				if err != nil {
					return
				}
				if buf, err = readInto(rd, buf); err != nil {
					return
				}
				if err := conn.Write(ctx, t, buf); err != nil {
					return
				}
			}
		})
	})
}
