// Command server is one echo server of the ginws benchmark: it mounts the
// WebSocket library named by -lib on a Gin engine at /echo and echoes every
// message back whole, with its type.
//
//	server -lib gorilla -addr 127.0.0.1:18001
//
// Every library is set up the same way: gin.New() in release mode with no
// middleware (with -gin-default, gin.Default()'s two instead: its logger,
// writing nowhere, and its recovery), no compression, a 16 MiB message
// limit, no origin check. Each
// server also answers GET /debug/goroutines with runtime.NumGoroutine(),
// GET /debug/live with its live heap and goroutine stacks after a GC, in
// bytes, as JSON {"heap_alloc":…,"stack_inuse":…}, and, for a library that
// counts its live connections (ginws, ginws-events), GET /debug/conns with
// that count (404 for the others).
//
// On SIGTERM the server exits at once and the kernel closes the connections,
// unless -graceful is given: then every library closes its live connections
// with 1001 "going away" first (ginws with Server.Shutdown, as the example
// server does; the peers through their own close call on every connection
// they track), and the server prints "shutdown: N connections closed in T"
// on stdout before it exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with -pprof
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
)

// maxMessageSize is the message size limit every server applies.
const maxMessageSize = 16 << 20

// mount registers the /echo route of one library on the engine.
type mount func(r *gin.Engine)

// libs holds the libraries compiled in; each file adds its own in init().
var libs = map[string]mount{}

// modules maps a library name to the Go module that implements it, for
// -versions.
var modules = map[string]string{}

func register(name, module string, m mount) {
	libs[name] = m
	modules[name] = module
}

// connCount, set by a library that keeps a count of its live WebSocket
// connections, is served as GET /debug/conns.
var connCount func() int

// graceful is -graceful: close every connection with 1001 on SIGTERM.
var graceful bool

// shutdownHooks close the live connections of the library (with -graceful);
// each returns how many it closed.
var shutdownHooks []func(ctx context.Context) (int, error)

// tracker keeps the live connections of a peer library whose API has no
// list of them, so that -graceful can close them; without -graceful it
// keeps nothing, so the benchmark figures do not pay for it.
type tracker struct {
	mu    sync.Mutex
	conns map[any]func()
}

func newTracker() *tracker {
	t := &tracker{conns: map[any]func(){}}
	if graceful {
		shutdownHooks = append(shutdownHooks, t.closeAll)
	}
	return t
}

// add registers a connection with the function that closes it with 1001;
// the returned function removes it again.
func (t *tracker) add(key any, goAway func()) (remove func()) {
	if !graceful {
		return func() {}
	}
	t.mu.Lock()
	t.conns[key] = goAway
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.conns, key)
		t.mu.Unlock()
	}
}

// closeAll sends every tracked connection its close frame, in parallel, and
// waits until their handlers have removed them (or ctx ends).
func (t *tracker) closeAll(ctx context.Context) (int, error) {
	t.mu.Lock()
	fs := make([]func(), 0, len(t.conns))
	for _, f := range t.conns {
		fs = append(fs, f)
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, f := range fs {
		wg.Go(f)
	}
	wg.Wait()
	for {
		t.mu.Lock()
		n := len(t.conns)
		t.mu.Unlock()
		if n == 0 {
			return len(fs), nil
		}
		select {
		case <-ctx.Done():
			return len(fs) - n, fmt.Errorf("%d connection(s) still open: %w", n, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func main() {
	lib := flag.String("lib", "", "library: "+strings.Join(names(), ", "))
	addr := flag.String("addr", "127.0.0.1:18000", "listen address (loopback)")
	versions := flag.Bool("versions", false, "print the module version of every library as JSON and exit")
	pprof := flag.Bool("pprof", false, "also serve net/http/pprof under /debug/pprof/ (off in benchmark runs)")
	memRate := flag.Int("memprofilerate", 0, "set runtime.MemProfileRate (1: record every allocation, for exact heap profiles); 0 keeps Go's default")
	ginDefault := flag.Bool("gin-default", false, "put gin.Default()'s middleware (logger, writing nowhere, and recovery) in front of every route, as most applications have")
	flag.BoolVar(&graceful, "graceful", false, "on SIGTERM close every connection with 1001 before exiting, and report it")
	flag.Parse()
	if *memRate > 0 {
		runtime.MemProfileRate = *memRate
	}

	if *versions {
		printVersions()
		return
	}
	m, ok := libs[*lib]
	if !ok {
		fmt.Fprintf(os.Stderr, "server: unknown -lib %q (have %s)\n", *lib, strings.Join(names(), ", "))
		os.Exit(2)
	}

	gin.SetMode(gin.ReleaseMode)
	gin.DefaultWriter = io.Discard
	gin.DefaultErrorWriter = io.Discard
	r := gin.New()
	if *ginDefault {
		r.Use(gin.Logger(), gin.Recovery())
	}
	r.GET("/debug/goroutines", func(c *gin.Context) {
		c.String(http.StatusOK, strconv.Itoa(runtime.NumGoroutine()))
	})
	r.GET("/debug/live", func(c *gin.Context) {
		// Collect first, so that only what is reachable is counted.
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		c.JSON(http.StatusOK, gin.H{"heap_alloc": ms.HeapAlloc, "stack_inuse": ms.StackInuse})
	})
	r.GET("/debug/conns", func(c *gin.Context) {
		if connCount == nil {
			c.Status(http.StatusNotFound)
			return
		}
		c.String(http.StatusOK, strconv.Itoa(connCount()))
	})
	if *pprof {
		r.GET("/debug/pprof/*any", gin.WrapH(http.DefaultServeMux))
	}
	m(r)

	if !loopback(*addr) {
		fmt.Fprintf(os.Stderr, "server: -addr %q is not a loopback address; the benchmark only listens on 127.0.0.0/8 or ::1\n", *addr)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: r}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		ln.Close()
		if !graceful {
			// Hijacked WebSocket connections are not tracked by
			// http.Server; the process exits and the kernel closes them.
			os.Exit(0)
		}
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		closed, code := 0, 0
		for _, h := range shutdownHooks {
			n, err := h(ctx)
			closed += n
			if err != nil {
				fmt.Fprintln(os.Stderr, "server: shutdown:", err)
				code = 1
			}
		}
		if err := srv.Shutdown(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "server: http shutdown:", err)
			code = 1
		}
		fmt.Printf("shutdown: %d connections closed in %s, %d goroutines left\n", closed, time.Since(t0).Round(time.Millisecond), runtime.NumGoroutine())
		os.Exit(code)
	}()

	fmt.Printf("listening on http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
	// The listener was closed by the signal handler, which exits the
	// process when it is done.
	select {}
}

// loopback reports whether addr (host:port) names a loopback host.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func names() []string {
	var n []string
	for k := range libs {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func printVersions() {
	out := map[string]string{"go": runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for name, mod := range modules {
			for _, d := range bi.Deps {
				if d.Path == mod {
					v := d.Version
					if d.Replace != nil {
						v = "local (" + d.Replace.Path + ")"
					}
					out[name] = mod + " " + v
				}
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/gin-gonic/gin" {
				out["gin"] = d.Path + " " + d.Version
			}
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// readInto reads r to EOF into buf, growing it when needed, and returns the
// filled slice. It lets the stream-style libraries reuse one buffer per
// connection, as ginws does ("p is valid until the next read").
func readInto(r io.Reader, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), max(2*cap(buf), 512))
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
