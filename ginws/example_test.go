package ginws_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gin-gonic/gin"
	gobwas "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/ginwstest"
)

// The examples talk to their routes with ginwstest, which dials a
// *gin.Engine in memory. In an application, r.Run or an http.Server
// serves the same engine on a real listener.

// Three lines: a WebSocket route that echoes every byte back. A Conn is an
// io.ReadWriteCloser; the byte stream sends binary messages.
func Example() {
	r := gin.New()
	ginws.Handle(r, "/echo", func(conn *ginws.Conn, c *gin.Context) error {
		_, err := io.Copy(conn, conn)
		return err
	})
	// r.Run("127.0.0.1:8080")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := ginwstest.Dial(ctx, r, "/echo")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	_ = client.WriteMessage(ctx, ginws.MessageText, []byte("hi"))
	typ, msg, err := client.ReadMessage(ctx)
	fmt.Println(typ, string(msg), err)
	// Output: binary hi <nil>
}

// Middleware of the route's group runs before the upgrade, as for any
// route: it can refuse the request with an HTTP status, and the values it
// sets stay readable from the *gin.Context for the life of the
// connection, because the handler runs in the request's goroutine.
func ExampleServer_Handle_middleware() {
	auth := func(c *gin.Context) {
		user, ok := map[string]string{"Bearer t0k3n": "ann"}[c.GetHeader("Authorization")]
		if !ok {
			c.AbortWithStatus(http.StatusUnauthorized) // never upgraded
			return
		}
		c.Set("user", user)
	}

	ws := ginws.New()
	r := gin.New()
	api := r.Group("/api", auth)
	ws.Handle(api, "/me", func(conn *ginws.Conn, c *gin.Context) error {
		return conn.WriteMessage(c, ginws.MessageText, []byte("you are "+c.GetString("user")))
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := ginwstest.Dial(ctx, r, "/api/me")
	fmt.Println(resp.StatusCode, err)

	client, _, err := ginwstest.Dial(ctx, r, "/api/me",
		ginwstest.Header(http.Header{"Authorization": {"Bearer t0k3n"}}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	_, msg, _ := client.ReadMessage(ctx)
	fmt.Println(string(msg))
	// Output:
	// 401 ginwstest: bad handshake: 401 Unauthorized
	// you are ann
}

// One path, two protocols: plain GETs go to the HTTP handlers, upgrade
// requests to the WebSocket handler.
func ExampleHTTP() {
	r := gin.New()
	ginws.Handle(r, "/feed", func(conn *ginws.Conn, c *gin.Context) error {
		return conn.WriteMessage(c, ginws.MessageText, []byte("live update"))
	}, ginws.HTTP(func(c *gin.Context) {
		c.String(http.StatusOK, "latest snapshot")
	}))

	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/feed", nil))
	fmt.Println(rec.Code, rec.Body.String())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := ginwstest.Dial(ctx, r, "/feed")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	_, msg, _ := client.ReadMessage(ctx)
	fmt.Println(string(msg))
	// Output:
	// 200 latest snapshot
	// live update
}

// The byte stream runs across message boundaries (unless ObjectMode is
// on), so any io.Reader consumer works: here bufio.Scanner reads lines
// that arrive split over messages. Every Write is one message, text with
// StreamText. When the client closes normally, Read returns io.EOF.
func ExampleConn_Read() {
	r := gin.New()
	ginws.Handle(r, "/lines", func(conn *ginws.Conn, c *gin.Context) error {
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			if _, err := fmt.Fprintf(conn, "got %q", sc.Text()); err != nil {
				return err
			}
		}
		return sc.Err()
	}, ginws.StreamText())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := ginwstest.Dial(ctx, r, "/lines")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	for _, part := range []string{"hel", "lo\nwor", "ld\n"} {
		_ = client.WriteMessage(ctx, ginws.MessageText, []byte(part))
	}
	for range 2 {
		typ, msg, _ := client.ReadMessage(ctx)
		fmt.Println(typ, string(msg))
	}
	// Output:
	// text got "hello"
	// text got "world"
}

// In object mode the byte stream keeps message boundaries: every Write is
// one message and a Read never mixes two. io.Copy from one Conn to another
// (or to itself) then forwards messages whole, text as text.
func ExampleObjectMode() {
	r := gin.New()
	ginws.Handle(r, "/relay", func(conn *ginws.Conn, c *gin.Context) error {
		_, err := io.Copy(conn, conn)
		return err
	}, ginws.ObjectMode(true))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := ginwstest.Dial(ctx, r, "/relay")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	_ = client.WriteMessage(ctx, ginws.MessageText, []byte(`{"op":"join"}`))
	_ = client.WriteMessage(ctx, ginws.MessageBinary, []byte{0xca, 0xfe})
	for range 2 {
		typ, msg, _ := client.ReadMessage(ctx)
		fmt.Printf("%v %q\n", typ, msg)
	}
	// Output:
	// text "{\"op\":\"join\"}"
	// binary "\xca\xfe"
}

// Broadcast sends one message to a selection of live connections: all of
// them, one route's, one room's, narrowed with Where. The frame is encoded
// once; each connection gets it from its own queue, so a slow peer never
// holds up Broadcast or the others.
func ExampleServer_Broadcast() {
	ws := ginws.New()
	r := gin.New()
	ws.Handle(r, "/chat/:room", func(conn *ginws.Conn, c *gin.Context) error {
		room := c.Param("room")
		conn.Join(room)
		conn.Set("user", c.Query("user"))
		if err := conn.WriteMessage(c, ginws.MessageText, []byte("welcome to "+room)); err != nil {
			return err
		}
		for {
			_, msg, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			ws.Broadcast(ginws.ToRoom(room), ginws.MessageText, msg)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	users := map[string]*ginwstest.Conn{}
	for _, u := range []string{"ann", "bob", "cid"} {
		room := map[string]string{"ann": "go", "bob": "go", "cid": "rust"}[u]
		c, _, err := ginwstest.Dial(ctx, r, "/chat/"+room+"?user="+u)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer c.Close()
		_, _, _ = c.ReadMessage(ctx) // welcome: joined
		users[u] = c
	}
	read := func(u string) {
		_, msg, _ := users[u].ReadMessage(ctx)
		fmt.Printf("%s: %s\n", u, msg)
	}

	_ = users["ann"].WriteMessage(ctx, ginws.MessageText, []byte("hi gophers"))
	read("ann")
	read("bob")

	fmt.Println(ws.Count(ginws.ToRoom("go")), "in go,", ws.Len(), "in all")
	n := ws.Broadcast(ginws.ToAll(), ginws.MessageText, []byte("restart at noon"))
	fmt.Println("sent to", n)
	read("ann")
	read("bob")
	read("cid")

	isCid := func(c *ginws.Conn) bool { u, _ := c.Get("user"); return u == "cid" }
	ws.Broadcast(ginws.ToRoute("/chat/:room").Where(isCid), ginws.MessageText, []byte("just you"))
	read("cid")
	// Output:
	// ann: hi gophers
	// bob: hi gophers
	// 2 in go, 3 in all
	// sent to 3
	// ann: restart at noon
	// bob: restart at noon
	// cid: restart at noon
	// cid: just you
}

// Subprotocols lists what the server speaks, in its order of preference;
// the first one the client also offers is chosen, and the handler finds it
// in Conn.Subprotocol. With no common subprotocol the upgrade still
// succeeds, with none: the handler decides.
func ExampleSubprotocols() {
	r := gin.New()
	ginws.Handle(r, "/rpc", func(conn *ginws.Conn, c *gin.Context) error {
		if conn.Subprotocol() == "" {
			return conn.CloseWith(ginws.StatusPolicyViolation, "speak rpc.v1 or rpc.v2")
		}
		return conn.WriteMessage(c, ginws.MessageText, []byte("speaking "+conn.Subprotocol()))
	}, ginws.Subprotocols("rpc.v2", "rpc.v1"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, offer := range [][]string{{"rpc.v1"}, {"rpc.v1", "rpc.v2"}, {"soap"}} {
		client, resp, err := ginwstest.Dial(ctx, r, "/rpc", ginwstest.Subprotocols(offer...))
		if err != nil {
			fmt.Println(err)
			return
		}
		_, msg, err := client.ReadMessage(ctx)
		if err != nil {
			fmt.Printf("%v: %v\n", offer, err)
		} else {
			fmt.Printf("%v: %s (header %q)\n", offer, msg, resp.Header.Get("Sec-WebSocket-Protocol"))
		}
		_ = client.Close()
	}
	// Output:
	// [rpc.v1]: speaking rpc.v1 (header "rpc.v1")
	// [rpc.v1 rpc.v2]: speaking rpc.v2 (header "rpc.v2")
	// [soap]: ginws: closed by peer with status 1008: speak rpc.v1 or rpc.v2
}

// An event-driven connection, as with fastify-websocket's
// socket.on('message'): the handler reads what it needs from the request
// (here the user that middleware authenticated, and a first message),
// sets OnMessage and returns. The connection stays open without a
// goroutine of its own while it waits, which is what servers holding very
// many mostly idle connections want.
func ExampleConn_OnMessage() {
	r := gin.New()
	auth := func(c *gin.Context) { c.Set("user", "ann") }
	closed := make(chan error, 1)
	ginws.Handle(r.Group("/", auth), "/chat", func(conn *ginws.Conn, c *gin.Context) error {
		user := c.GetString("user") // c is valid until the handler returns
		_, p, err := conn.ReadMessage(c)
		if err != nil {
			return err
		}
		hello := string(p) // p is reused by the next read
		conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
			reply := fmt.Appendf(nil, "%s (%s): %s", user, hello, p)
			return conn.WriteMessage(context.Background(), t, reply)
		})
		conn.OnClose(func(_ *ginws.Conn, err error) { closed <- err })
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := ginwstest.Dial(ctx, r, "/chat")
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = client.WriteMessage(ctx, ginws.MessageText, []byte("hello"))
	for _, m := range []string{"one", "two"} {
		_ = client.WriteMessage(ctx, ginws.MessageText, []byte(m))
		_, reply, _ := client.ReadMessage(ctx)
		fmt.Println(string(reply))
	}
	_ = client.Close()
	fmt.Println("closed:", ginws.CloseStatus(<-closed))
	// Output:
	// ann (hello): one
	// ann (hello): two
	// closed: 1000
}

// Browsers always send Origin. ginws accepts the same origin and, with
// OriginPatterns, the listed ones, and refuses other sites with 403 (a
// page of another site must not ride on the user's cookies). Clients that
// send no Origin are not browsers and pass.
func ExampleOriginPatterns() {
	r := gin.New()
	ginws.Handle(r, "/live", func(conn *ginws.Conn, c *gin.Context) error {
		return nil
	}, ginws.OriginPatterns("*.example.com", "localhost:*"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, origin := range []string{
		"https://api.example.com", // Host of the request: same origin
		"https://app.example.com",
		"http://localhost:3000",
		"https://evil.example.net",
		"", // no Origin: not a browser
	} {
		h := http.Header{"Host": {"api.example.com"}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		client, resp, err := ginwstest.Dial(ctx, r, "/live", ginwstest.Header(h))
		if err == nil {
			_ = client.Close()
		}
		fmt.Printf("%q: %d\n", origin, resp.StatusCode)
	}
	// Output:
	// "https://api.example.com": 101
	// "https://app.example.com": 101
	// "http://localhost:3000": 101
	// "https://evil.example.net": 403
	// "": 101
}

// Server.Middleware, installed before the routes, sends upgrade requests
// that no WebSocket route serves to the DefaultHandler (without one they
// are upgraded and closed with 1008).
func ExampleServer_Middleware() {
	ws := ginws.New(ginws.DefaultHandler(func(conn *ginws.Conn, c *gin.Context) error {
		return conn.CloseWith(4004, "no WebSocket at "+c.Request.URL.Path)
	}))
	r := gin.New()
	r.Use(ws.Middleware())
	r.GET("/status", func(c *gin.Context) { c.String(http.StatusOK, "ok") })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, path := range []string{"/status", "/missing"} {
		client, _, err := ginwstest.Dial(ctx, r, path)
		if err != nil {
			fmt.Println(err)
			return
		}
		_, _, err = client.ReadMessage(ctx)
		fmt.Println(ginws.CloseStatus(err), err)
		_ = client.Close()
	}
	// Output:
	// 4004 ginws: closed by peer with status 4004: no WebSocket at /status
	// 4004 ginws: closed by peer with status 4004: no WebSocket at /missing
}

// http.Server.Shutdown does not track hijacked connections: register
// Server.Shutdown with RegisterOnShutdown so that stopping the HTTP server
// also closes every WebSocket with 1001, refuses new upgrades with 503 and
// waits for the handlers to return. This example serves on 127.0.0.1 and
// connects with the gobwas/ws client.
func ExampleServer_Shutdown() {
	ws := ginws.New()
	r := gin.New()
	ws.Handle(r, "/events", func(conn *ginws.Conn, c *gin.Context) error {
		if err := conn.WriteMessage(c, ginws.MessageText, []byte("subscribed")); err != nil {
			return err
		}
		<-conn.Done() // a handler that never reads: ginws answers the close for it
		return nil
	})

	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	wsDone := make(chan error, 1)
	srv.RegisterOnShutdown(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		wsDone <- ws.Shutdown(ctx)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := gobwas.Dial(ctx, "ws://"+ln.Addr().String()+"/events")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	var rw io.ReadWriter = nc
	if br != nil { // frames that came with the handshake response
		rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, nc), nc}
	}
	msg, _, err := wsutil.ReadServerData(rw)
	fmt.Println(string(msg), err)
	closed := make(chan error, 1)
	go func() {
		_, _, err := wsutil.ReadServerData(rw) // answers the close frame
		closed <- err
	}()

	fmt.Println("http shutdown:", srv.Shutdown(ctx))
	fmt.Println("ginws shutdown:", <-wsDone)
	var ce wsutil.ClosedError
	if errors.As(<-closed, &ce) {
		fmt.Println("client got", ce.Code, ce.Reason)
	}
	fmt.Println("serve:", <-served)
	// Output:
	// subscribed <nil>
	// http shutdown: <nil>
	// ginws shutdown: <nil>
	// client got 1001 server is shutting down
	// serve: http: Server closed
}
