// Command server is one echo server of the ginws benchmark: it mounts the
// WebSocket library named by -lib on a Gin engine at /echo and echoes every
// message back whole, with its type.
//
//	server -lib gorilla -addr 127.0.0.1:18001
//
// Every library is set up the same way: gin.New() in release mode with no
// middleware, no compression, a 16 MiB message limit, no origin check. Each
// server also answers GET /debug/goroutines with runtime.NumGoroutine(), and
// GET /debug/live with its live heap and goroutine stacks after a GC, in
// bytes, as JSON {"heap_alloc":…,"stack_inuse":…}.
package main

import (
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
	"syscall"

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

func main() {
	lib := flag.String("lib", "", "library: "+strings.Join(names(), ", "))
	addr := flag.String("addr", "127.0.0.1:18000", "listen address (loopback)")
	versions := flag.Bool("versions", false, "print the module version of every library as JSON and exit")
	pprof := flag.Bool("pprof", false, "also serve net/http/pprof under /debug/pprof/ (off in benchmark runs)")
	flag.Parse()

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
		// Hijacked WebSocket connections are not tracked by http.Server;
		// the process exits and the kernel closes them.
		ln.Close()
		os.Exit(0)
	}()

	fmt.Printf("listening on http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
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
