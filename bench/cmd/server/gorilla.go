package main

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/gorilla/websocket"
)

func init() {
	register("gorilla", "github.com/gorilla/websocket", func(r *gin.Engine) {
		up := websocket.Upgrader{
			CheckOrigin:       func(*http.Request) bool { return true },
			EnableCompression: false,
		}
		r.GET("/echo", func(c *gin.Context) {
			conn, err := up.Upgrade(c.Writer, c.Request, nil)
			if err != nil {
				return
			}
			defer conn.Close()
			conn.SetReadLimit(maxMessageSize)
			var buf []byte // grown by readInto at the first message: idle connections have none
			for {
				t, rd, err := conn.NextReader()
				if err != nil {
					return
				}
				if buf, err = readInto(rd, buf); err != nil {
					return
				}
				if err := conn.WriteMessage(t, buf); err != nil {
					return
				}
			}
		})
	})
}
