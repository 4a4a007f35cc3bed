// Command echo-cluster is the example server of examples/echo with its
// chat spanning instances: run several, each with the same -redis or
// -nats broker, and a /chat message reaches the /chat clients of all of
// them. It lives in its own module (backplane/e2e) so that the main
// ginws module never requires Redis or NATS clients.
//
//	go run ./cmd/echo-cluster -addr 127.0.0.1:8081 -redis redis://127.0.0.1:6379
//	go run ./cmd/echo-cluster -addr 127.0.0.1:8082 -nats nats://127.0.0.1:4222
//
// Routes: / (the demo page of examples/echo, when found; see -page),
// /healthz, /echo, /chat, and /cluster (this instance's backplane state
// and counters, JSON). Without -redis or -nats, /chat stays local.
// It prints "listening on http://HOST:PORT" when ready; SIGINT/SIGTERM
// close every WebSocket with 1001 and exit 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/backplane/nats"
	"github.com/ginws/ginws/backplane/redis"
	"github.com/ginws/ginws/ginws"
)

// backplane is what both adapters are.
type backplane interface {
	ginws.Backplane
	ginws.BackplaneStater
	Close() error
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address HOST:PORT")
	maxPayload := flag.Int64("max-payload", ginws.DefaultMaxPayload, "largest incoming message in bytes")
	redisURL := flag.String("redis", "", "span /chat across instances through Redis pub/sub at redis://HOST:PORT")
	natsURL := flag.String("nats", "", "span /chat across instances through NATS at nats://HOST:PORT")
	topic := flag.String("topic", ginws.DefaultClusterTopic, "broker channel/subject shared by the instances")
	page := flag.String("page", "", "demo page to serve at / (default: examples/echo/static/index.html, looked up from the working directory upwards)")
	flag.Parse()

	logState := func(kind string) func(ginws.BackplaneState) {
		return func(s ginws.BackplaneState) { log.Printf("%s backplane: %s", kind, s) }
	}
	var bp backplane
	var err error
	switch {
	case *redisURL != "" && *natsURL != "":
		log.Fatal("give -redis or -nats, not both")
	case *redisURL != "":
		bp, err = redis.New(*redisURL, redis.OnStateChange(logState("redis")))
	case *natsURL != "":
		bp, err = nats.New(*natsURL, nats.OnStateChange(logState("nats")))
	}
	if err != nil {
		log.Fatal(err)
	}

	gin.SetMode(gin.ReleaseMode)
	ws := ginws.New(ginws.MaxPayload(*maxPayload))
	var cl *ginws.Cluster
	if bp != nil {
		cl, err = ginws.NewCluster(ws, bp, ginws.ClusterTopic(*topic),
			ginws.ClusterErrorHandler(func(err error) { log.Print(err) }))
		if err != nil {
			log.Fatal(err)
		}
	}
	r := gin.New()
	r.Use(gin.Recovery(), ws.Middleware())
	routes(r, ws, cl, findPage(*page))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	fmt.Printf("listening on http://%s\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		log.Fatal(err)
	case <-stop:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if cl != nil {
		errs = append(errs, cl.Shutdown(ctx))
	}
	errs = append(errs, ws.Shutdown(ctx), srv.Shutdown(ctx))
	if bp != nil {
		errs = append(errs, bp.Close())
	}
	if err := errors.Join(errs...); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func routes(r *gin.Engine, ws *ginws.Server, cl *ginws.Cluster, page []byte) {
	r.GET("/", func(c *gin.Context) {
		if page == nil {
			c.String(http.StatusOK, "ginws echo-cluster: /chat, /echo, /cluster (demo page not found: see -page)\n")
			return
		}
		c.Data(http.StatusOK, "text/html; charset=utf-8", page)
	})
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	r.GET("/cluster", func(c *gin.Context) {
		if cl == nil {
			c.JSON(http.StatusOK, gin.H{"state": "local"})
			return
		}
		c.JSON(http.StatusOK, gin.H{"id": cl.ID(), "state": cl.State().String(), "stats": cl.Stats(), "conns": ws.Len()})
	})
	ws.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
		for {
			t, p, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			if err := conn.WriteMessage(c, t, p); err != nil {
				return err
			}
		}
	})
	ws.Handle(r, "/chat", func(conn *ginws.Conn, c *gin.Context) error {
		for {
			t, p, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			if t != ginws.MessageText {
				continue
			}
			if cl == nil {
				ws.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, p)
				continue
			}
			// Delivered here at once; to the other instances through the
			// broker. A full queue or a lost broker only costs the other
			// instances this message (counted in /cluster).
			_, _ = cl.Broadcast(ginws.ToRoute("/chat"), ginws.MessageText, p)
		}
	})
}

// findPage reads the demo page: path, or examples/echo/static/index.html
// in the working directory or one of its parents.
func findPage(path string) []byte {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			log.Fatal(err)
		}
		return b
	}
	dir, err := os.Getwd()
	if err != nil {
		return nil
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "examples", "echo", "static", "index.html")); err == nil {
			return b
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}
