package ginwstest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/ginwstest"
)

// A test dials the application's engine, sends a message and reads the
// reply. No port is opened.
func ExampleDial() {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	ws := ginws.New()
	ws.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
		for {
			typ, msg, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			if err := conn.WriteMessage(c, typ, msg); err != nil {
				return err
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := ginwstest.Dial(ctx, r, "/echo")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close() // waits for the handler to return
	fmt.Println(resp.Status)

	if err := c.WriteMessage(ctx, ginws.MessageText, []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}
	typ, msg, err := c.ReadMessage(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(typ, string(msg))
	// Output:
	// 101 Switching Protocols
	// text hello
}

// Middleware runs before the upgrade: a request it refuses comes back as
// an HTTP response, and values it sets reach the handler.
func ExampleDial_middleware() {
	gin.SetMode(gin.TestMode)
	auth := func(c *gin.Context) {
		if c.GetHeader("Authorization") != "Bearer s3cret" {
			c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "unauthorized"})
			return
		}
		c.Set("user", "ann")
	}
	r := gin.New()
	ws := ginws.New()
	ws.Handle(r.Group("/", auth), "/hello", func(conn *ginws.Conn, c *gin.Context) error {
		return conn.WriteMessage(c, ginws.MessageText, []byte("hello "+c.GetString("user")))
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, resp, err := ginwstest.Dial(ctx, r, "/hello")
	if errors.Is(err, ginwstest.ErrBadHandshake) {
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, string(body))
	}

	c, _, err := ginwstest.Dial(ctx, r, "/hello",
		ginwstest.Header(http.Header{"Authorization": {"Bearer s3cret"}}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, msg, _ := c.ReadMessage(ctx)
	fmt.Println(string(msg))
	_, _, err = c.ReadMessage(ctx) // the handler returned: closed with 1000
	fmt.Println(ginws.CloseStatus(err))
	// Output:
	// 401 {"error":"unauthorized"}
	// hello ann
	// 1000
}

// Close codes travel both ways as *ginws.CloseError.
func ExampleConn_CloseWith() {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	ws := ginws.New()
	ws.Handle(r, "/game", func(conn *ginws.Conn, c *gin.Context) error {
		_, _, err := conn.ReadMessage(c)
		var ce *ginws.CloseError
		if errors.As(err, &ce) {
			fmt.Println("server saw", ce.Code, ce.Reason)
		}
		return err
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := ginwstest.Dial(ctx, r, "/game")
	if err != nil {
		fmt.Println(err)
		return
	}
	// CloseWith returns once the handler has returned.
	fmt.Println(c.CloseWith(4000, "game over"))
	// Output:
	// server saw 4000 game over
	// <nil>
}
