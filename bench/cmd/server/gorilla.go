package main

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gorilla/websocket"
)

func init() {
	register("gorilla", "github.com/gorilla/websocket", func(r *gin.Engine) {
		up := websocket.Upgrader{
			CheckOrigin:       func(*http.Request) bool { return true },
			EnableCompression: false,
		}
		live := newTracker() // only with -graceful
		r.GET("/echo", func(c *gin.Context) {
			conn, err := up.Upgrade(c.Writer, c.Request, nil)
			if err != nil {
				return
			}
			defer conn.Close()
			defer live.add(conn, func() {
				// The peer answers with its own close frame, which ends
				// NextReader below.
				msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server is shutting down")
				if conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second)) != nil {
					conn.Close()
				}
			})()
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
