package e2e_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"

	"github.com/ginws/ginws/backplane/nats"
	"github.com/ginws/ginws/backplane/nats/natstest"
	"github.com/ginws/ginws/backplane/redis"
	"github.com/ginws/ginws/backplane/redis/redistest"
	"github.com/ginws/ginws/ginws"
)

// BenchmarkBackplane publishes from instance 0 of 3 in-process instances
// (each its own Server, backplane connection and Cluster, sharing one
// broker) with 1,000 WebSocket clients each (GINWS_BENCH_CONNS to
// change), and reports:
//
//   - throughput: messages/s when every one of the 3,000 clients gets
//     every message (at most 64 messages in flight), and deliveries/s;
//   - latency: at 20 messages/s (a rate at which every frame is written
//     on its own), from Broadcast to a client's read, p50 and p99 for the
//     clients of the publishing instance (local broadcast) and of the
//     others (through the broker), and the added latency (remote minus
//     local). A message reaches 1,000 connections one after another, so
//     the local p50 is about half the time to write to all of them.
//
// "local" is the reference without a backplane: one Server with all the
// clients and Server.Broadcast. The clients run in this process, so they
// share the CPU with the servers and the broker.
//
//	cd backplane/e2e && go test -run '^$' -bench Backplane -benchtime 2s
func BenchmarkBackplane(b *testing.B) {
	conns := 1000
	if v, err := strconv.Atoi(os.Getenv("GINWS_BENCH_CONNS")); err == nil && v > 0 {
		conns = v
	}
	gin.SetMode(gin.ReleaseMode)
	b.Run("local", func(b *testing.B) {
		bc := newBenchCluster(b, 1, 3*conns, nil)
		runBench(b, bc)
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		bc := newBenchCluster(b, 3, conns, func() (backplane, error) { return redis.New(srv.URL) })
		runBench(b, bc)
	})
	b.Run("nats", func(b *testing.B) {
		srv := natstest.Start(b)
		bc := newBenchCluster(b, 3, conns, func() (backplane, error) { return nats.New(srv.URL) })
		runBench(b, bc)
	})
}

type backplane interface {
	ginws.Backplane
	ginws.BackplaneStater
	Close() error
}

func runBench(b *testing.B, bc *benchCluster) {
	b.Run("throughput", func(b *testing.B) {
		bc.reset(false)
		start := time.Now()
		for i := range b.N {
			bc.publish(uint64(i), false)
			if i%8 == 0 {
				bc.waitBehind(b, int64(i+1), 64)
			}
		}
		bc.waitBehind(b, int64(b.N), 0)
		el := time.Since(start).Seconds()
		b.ReportMetric(float64(b.N)/el, "msgs/s")
		b.ReportMetric(float64(b.N)*float64(bc.total())/el, "deliveries/s")
	})
	b.Run("latency", func(b *testing.B) {
		bc.reset(true)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := range b.N {
			<-tick.C
			bc.publish(uint64(i), true)
		}
		bc.waitBehind(b, int64(b.N), 0)
		b.StopTimer()
		var local, remote []time.Duration
		for i, in := range bc.insts {
			for _, c := range in.clients {
				if i == 0 {
					local = append(local, c.lat...)
				} else {
					remote = append(remote, c.lat...)
				}
			}
		}
		lp50, lp99 := percentiles(local)
		b.ReportMetric(us(lp50), "local-p50-µs")
		b.ReportMetric(us(lp99), "local-p99-µs")
		if len(remote) > 0 {
			rp50, rp99 := percentiles(remote)
			b.ReportMetric(us(rp50), "remote-p50-µs")
			b.ReportMetric(us(rp99), "remote-p99-µs")
			b.ReportMetric(us(rp50-lp50), "added-p50-µs")
			b.ReportMetric(us(rp99-lp99), "added-p99-µs")
		}
	})
	if t := bc.dropped(); t != "" {
		b.Fatal(t)
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

type benchCluster struct {
	insts []*benchInst
	base  time.Time
	msg   []byte
}

type benchInst struct {
	srv     *ginws.Server
	ts      *httptest.Server
	cl      *ginws.Cluster
	bp      backplane
	recv    atomic.Int64 // messages received by its clients since reset
	clients []*benchClient
}

type benchClient struct {
	nc   net.Conn
	r    io.Reader
	lat  []time.Duration
	done chan struct{}
}

func newBenchCluster(b *testing.B, n, conns int, dial func() (backplane, error)) *benchCluster {
	b.Helper()
	bc := &benchCluster{base: time.Now(), msg: make([]byte, 128)}
	for range n {
		in := &benchInst{srv: ginws.New(ginws.SendQueue(1 << 16))}
		r := gin.New()
		in.srv.Handle(r, "/bench", func(conn *ginws.Conn, c *gin.Context) error {
			for {
				if _, _, err := conn.ReadMessage(c); err != nil {
					return err
				}
			}
		})
		in.ts = httptest.NewServer(r)
		if dial != nil {
			bp, err := dial()
			if err != nil {
				b.Fatal(err)
			}
			in.bp = bp
			if in.cl, err = ginws.NewCluster(in.srv, bp, ginws.ClusterQueue(1<<16)); err != nil {
				b.Fatal(err)
			}
		}
		bc.insts = append(bc.insts, in)
	}
	b.Cleanup(bc.close)
	for _, in := range bc.insts {
		url := "ws" + strings.TrimPrefix(in.ts.URL, "http") + "/bench"
		for range conns {
			nc, br, _, err := ws.Dial(context.Background(), url)
			if err != nil {
				b.Fatal(err)
			}
			c := &benchClient{nc: nc, r: br, done: make(chan struct{})}
			if br == nil {
				c.r = bufio.NewReader(nc) // several frames per read
			}
			in.clients = append(in.clients, c)
			go c.read(bc, in)
		}
		for in.srv.Len() < conns {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, in := range bc.insts {
		for in.cl != nil && in.cl.State() != ginws.BackplaneConnected {
			time.Sleep(5 * time.Millisecond)
		}
	}
	// One message through, so every subscription is in place.
	bc.reset(false)
	bc.publish(0, false)
	deadline := time.Now().Add(10 * time.Second)
	for bc.behind(1) > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("the first message did not reach every client: %s", bc.dropped())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return bc
}

// read counts the messages of one client and, for those flagged, the
// latency from the timestamp they carry.
func (c *benchClient) read(bc *benchCluster, in *benchInst) {
	defer close(c.done)
	buf := make([]byte, 256)
	for {
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			return
		}
		if h.Length > int64(len(buf)) {
			return
		}
		p := buf[:h.Length]
		if _, err := io.ReadFull(c.r, p); err != nil {
			return
		}
		if h.OpCode != ws.OpBinary || len(p) < 9 {
			continue
		}
		if p[8] == 1 {
			sent := time.Duration(binary.LittleEndian.Uint64(p))
			c.lat = append(c.lat, time.Since(bc.base)-sent)
		}
		in.recv.Add(1) // after the append: a reader of recv sees lat
	}
}

func (bc *benchCluster) reset(latency bool) {
	for _, in := range bc.insts {
		in.recv.Store(0)
		if latency {
			for _, c := range in.clients {
				c.lat = c.lat[:0]
			}
		}
	}
}

func (bc *benchCluster) publish(i uint64, latency bool) {
	p := bc.msg
	binary.LittleEndian.PutUint64(p, uint64(time.Since(bc.base)))
	p[8] = 0
	if latency {
		p[8] = 1
	}
	binary.LittleEndian.PutUint64(p[9:], i)
	in := bc.insts[0]
	if in.cl == nil {
		in.srv.Broadcast(ginws.ToRoute("/bench"), ginws.MessageBinary, p)
		return
	}
	_, _ = in.cl.Broadcast(ginws.ToRoute("/bench"), ginws.MessageBinary, p)
}

func (bc *benchCluster) total() int {
	n := 0
	for _, in := range bc.insts {
		n += len(in.clients)
	}
	return n
}

// behind is how many messages the slowest instance's clients still miss
// out of sent, on average.
func (bc *benchCluster) behind(sent int64) int64 {
	var worst int64
	for _, in := range bc.insts {
		worst = max(worst, sent-in.recv.Load()/int64(len(in.clients)))
	}
	return worst
}

// waitBehind waits until at most window messages are still on their way.
func (bc *benchCluster) waitBehind(b *testing.B, sent, window int64) {
	deadline := time.Now().Add(30 * time.Second)
	for bc.behind(sent) > window {
		if time.Now().After(deadline) {
			b.Fatalf("messages lost: %d behind after 30 s (%s)", bc.behind(sent), bc.dropped())
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// dropped describes any message a Cluster did not publish or deliver.
func (bc *benchCluster) dropped() string {
	var s []string
	for i, in := range bc.insts {
		if in.cl == nil {
			continue
		}
		st := in.cl.Stats()
		if st.Dropped+st.Failed+st.Missed > 0 {
			s = append(s, fmt.Sprintf("instance %d: %+v", i, st))
		}
	}
	return strings.Join(s, "; ")
}

func (bc *benchCluster) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, in := range bc.insts {
		if in.cl != nil {
			_ = in.cl.Shutdown(ctx)
		}
		for _, c := range in.clients {
			_ = c.nc.Close()
			wg.Add(1)
			go func() { <-c.done; wg.Done() }()
		}
	}
	wg.Wait()
	for _, in := range bc.insts {
		_ = in.srv.Shutdown(ctx)
		in.ts.Close()
		if in.bp != nil {
			_ = in.bp.Close()
		}
	}
}
