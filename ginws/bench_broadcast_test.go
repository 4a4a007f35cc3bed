package ginws_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"

	"github.com/ginws/ginws/ginws"
)

const benchClientEnv = "GINWS_BENCH_CLIENT_URL"

// BenchmarkBroadcast sends a 1 KiB text message to every live connection,
// with Broadcast and with a loop of WriteMessage calls, and counts an op as
// done when every client has it. The clients run in a child process (this
// test binary in client mode), so 10k connections stay under the
// per-process file limit.
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, mode := range []string{"broadcast", "loop"} {
			b.Run(fmt.Sprintf("%s/conns=%d", mode, n), func(b *testing.B) { benchBroadcast(b, n, mode == "loop") })
		}
	}
}

func benchBroadcast(b *testing.B, n int, loop bool) {
	ts := newServer(b, func(r *gin.Engine, s *ginws.Server) { s.Handle(r, "/room", roomHandler) },
		ginws.SendQueue(1<<20)) // the benchmark sends without pacing
	s := ts.ws
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchClientEnv+"="+ts.wsURL("/room"), "GINWS_BENCH_CLIENTS="+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	expect := func(want string) {
		if !lines.Scan() || lines.Text() != want {
			b.Fatalf("client process said %q, want %q (%v)", lines.Text(), want, lines.Err())
		}
	}
	expect("ready")
	for s.Len() < n {
		time.Sleep(10 * time.Millisecond)
	}
	var conns []*ginws.Conn
	s.Range(ginws.ToAll(), func(c *ginws.Conn) bool { conns = append(conns, c); return true })
	msg := []byte(strings.Repeat("x", 1024))
	ctx := context.Background()
	round := func() {
		for range b.N {
			if loop {
				for _, c := range conns {
					_ = c.WriteMessage(ctx, ginws.MessageText, msg)
				}
			} else {
				s.Broadcast(ginws.ToAll(), ginws.MessageText, msg)
			}
		}
		fmt.Fprintf(stdin, "%d\n", b.N)
		expect("done")
	}
	// Warm-up rounds fill the pools of queue chunks to what this load
	// keeps queued at once, and grow each socket's iovec array (up to one
	// chunk's worth); the measured round is the steady state.
	round()
	round()
	b.SetBytes(int64(len(msg) * n))
	b.ReportAllocs()
	b.ResetTimer()
	round()
	b.StopTimer()
}

// runBenchClients is the child process: it opens the connections, says
// "ready", and for every count K read from stdin says "done" once every
// connection has received K more messages.
func runBenchClients(url string) int {
	n, _ := strconv.Atoi(os.Getenv("GINWS_BENCH_CLIENTS"))
	var total atomic.Int64
	conns := make([]net.Conn, 0, n)
	for range n {
		nc, br, _, err := ws.Dial(context.Background(), url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			return 1
		}
		conns = append(conns, nc)
		var r io.Reader = nc
		if br != nil {
			r = io.MultiReader(br, nc)
		}
		go func() {
			var hdr [10]byte
			buf := make([]byte, 4096)
			for {
				if _, err := readFramePayload(r, hdr[:], buf); err != nil {
					return
				}
				total.Add(1)
			}
		}()
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	var seen int64
	for in.Scan() {
		k, _ := strconv.ParseInt(in.Text(), 10, 64)
		seen += k * int64(n)
		for total.Load() < seen {
			time.Sleep(100 * time.Microsecond)
		}
		fmt.Println("done")
	}
	for _, c := range conns {
		_ = c.Close()
	}
	return 0
}
