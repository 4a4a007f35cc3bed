// Command echo is the ginws example server: a demo page, an echo route
// that conformance suites drive, the byte stream in both modes, and a
// chat room. See the README for its contract.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/ginws"
)

//go:embed static/index.html
var indexHTML []byte

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address HOST:PORT")
	maxPayload := flag.Int64("max-payload", ginws.DefaultMaxPayload, "largest incoming message in bytes")
	deflate := flag.Bool("deflate", false, "offer and accept permessage-deflate on every route")
	flag.Parse()
	opts := []ginws.Option{ginws.MaxPayload(*maxPayload)}
	if *deflate {
		opts = append(opts, ginws.Compression(ginws.DeflateOptions{}))
	}

	gin.SetMode(gin.ReleaseMode)
	ws := ginws.New(opts...)
	r := gin.New()
	r.Use(gin.Recovery(), ws.Middleware())
	routes(r, ws)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 10 * time.Second, // a slowloris client cannot hold a goroutine
		// Nor one that dribbles a request body: net/http reads up to
		// 256 KiB of a body the handler left unread, with no deadline
		// but this one. Hijacked connections (the WebSockets) are not
		// bound by it: net/http clears the deadlines on Hijack.
		ReadTimeout:    10 * time.Second,
		MaxHeaderBytes: 16 << 10,
	}
	// Signals are caught before the ready line, so a SIGTERM sent the moment
	// it appears is a graceful shutdown too.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	fmt.Printf("listening on http://%s\n", readyAddr(*addr, ln.Addr()))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		log.Fatal(err)
	case <-stop:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Close every WebSocket with 1001 first: http.Server.Shutdown does not
	// see hijacked connections.
	wsErr := ws.Shutdown(ctx)
	// Plain HTTP requests end within ReadTimeout of their start at the
	// latest: give them that, whatever the WebSockets took.
	httpCtx, httpCancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer httpCancel()
	httpErr := srv.Shutdown(httpCtx)
	if err := errors.Join(wsErr, httpErr); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func routes(r *gin.Engine, ws *ginws.Server) {
	r.GET("/", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", indexHTML) })
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok") })

	ws.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
		ctx := context.Background()
		for {
			t, p, err := conn.ReadMessage(ctx)
			if err != nil {
				return err
			}
			if err := conn.WriteMessage(ctx, t, p); err != nil {
				return err
			}
		}
	})
	ws.Handle(r, "/stream", copyStream)
	ws.Handle(r, "/object", copyStream, ginws.ObjectMode(true))
	ws.Handle(r, "/chat", func(conn *ginws.Conn, c *gin.Context) error {
		for {
			t, p, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			if t == ginws.MessageText {
				ws.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, p)
			}
		}
	})
	ws.Handle(r, "/close", func(conn *ginws.Conn, c *gin.Context) error {
		code, err := strconv.Atoi(c.DefaultQuery("code", "1000"))
		if err != nil {
			return err
		}
		return conn.CloseWith(ginws.StatusCode(code), c.Query("reason"))
	})
}

// readyAddr is the HOST:PORT of the ready line: the host as -addr gave it
// (a harness started with -addr localhost:9000 waits for that), the port
// the listener got (-addr 127.0.0.1:0 asks for any).
func readyAddr(flagAddr string, bound net.Addr) string {
	bhost, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return bound.String()
	}
	host, _, err := net.SplitHostPort(flagAddr)
	if err != nil || host == "" {
		host = bhost
	}
	return net.JoinHostPort(host, port)
}

func copyStream(conn *ginws.Conn, _ *gin.Context) error {
	_, err := io.Copy(conn, conn)
	return err
}
