package ginws_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ginws/ginws/ginws"
)

// BenchmarkIdleConns holds n idle connections (clients in a child process,
// so only the server side is counted) and reports the server's memory per
// connection: goroutine stack, heap in use, and goroutines. Run at several
// n up to the file limit, the figures per connection stay flat. "loop" is
// a handler that reads in a loop (the request's goroutine waits in the
// read); "events" hands the connection to Conn.OnMessage and returns.
func BenchmarkIdleConns(b *testing.B) {
	handlers := []struct {
		name string
		h    ginws.Handler
	}{{"loop", echoHandler}, {"events", eventEcho}}
	for _, h := range handlers {
		for _, n := range []int{1000, 5000, 15000} {
			b.Run(fmt.Sprintf("%s/conns=%d", h.name, n), func(b *testing.B) {
				for range b.N {
					idleOnce(b, h.h, n)
				}
			})
		}
	}
}

func idleOnce(b *testing.B, h ginws.Handler, n int) {
	m := idleMemory(b, h, n)
	b.ReportMetric(m.stack, "stack-B/conn")
	b.ReportMetric(m.heap, "heap-B/conn")
	b.ReportMetric(m.goroutines, "goroutines/conn")
}

// idleCost is what n idle connections cost the server, per connection.
type idleCost struct{ stack, heap, goroutines float64 }

// idleMemory opens n connections to a server running h, behind the
// middleware mw, from a child process and measures the server's goroutine
// stacks, heap in use and goroutines per connection once they are all
// idle.
func idleMemory(t testing.TB, h ginws.Handler, n int, mw ...gin.HandlerFunc) idleCost {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		r.Use(mw...)
		s.Handle(r, "/echo", h)
	})
	before := collectedMemStats() // the stacks and heap of earlier runs go back first
	g0 := runtime.NumGoroutine()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchClientEnv+"="+ts.wsURL("/echo"), "GINWS_BENCH_CLIENTS="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The next measurement starts once these connections are gone.
		_ = stdin.Close()
		_ = cmd.Wait()
		for deadline := time.Now().Add(10 * time.Second); ts.ws.Len() > 0 || runtime.NumGoroutine() > g0; {
			if time.Now().After(deadline) {
				t.Errorf("%d connections and %d goroutines left 10 s after the clients closed", ts.ws.Len(), runtime.NumGoroutine()-g0)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if lines := bufio.NewScanner(stdout); !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("client process: %q", lines.Text())
	}
	for ts.ws.Len() < n {
		time.Sleep(10 * time.Millisecond)
	}
	after := collectedMemStats()
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	return idleCost{
		stack:      per(after.StackInuse, before.StackInuse),
		heap:       per(after.HeapInuse, before.HeapInuse),
		goroutines: float64(runtime.NumGoroutine()-g0) / float64(n),
	}
}
