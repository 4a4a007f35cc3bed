// Command load is the load generator of the ginws benchmark. It speaks the
// client side of WebSocket with gobwas/ws: the handshake from its Dialer, and
// then hand-built frames, each connection sending one preallocated, already
// masked frame over and over, so that the generator does as little work per
// message as it can.
//
// Modes (-mode):
//
//	echo     each of -conns connections sends a -size byte binary message,
//	         waits for the whole echo, and repeats (a closed loop), for
//	         -duration or until -messages messages in all; reports
//	         messages/s, MB/s (payload bytes echoed, 1 MB = 10^6 B) and the
//	         round-trip latency percentiles.
//	idle     opens -conns connections and holds them; with -server-pid it
//	         reports the server's RSS before and after, and per connection,
//	         and its goroutine count (GET /debug/goroutines).
//	upgrade  -conns workers open a connection, do the close handshake and
//	         hang up, as fast as they can, for -duration; reports upgrades/s.
//
// Every mode prints one JSON line on stdout. Connections come from many
// source addresses 127.1.x.y (-src-ips) so that more than 64k of them can
// reach one server port. A process can hold at most its open-file limit of
// sockets; run several for more.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ginws/ginws/bench/internal/procstat"
	"github.com/gobwas/ws"
)

type config struct {
	url        string
	mode       string
	conns      int
	size       int
	text       bool
	duration   time.Duration
	warmup     time.Duration
	messages   int64
	serverPID  int
	srcIPs     int
	srcBase    net.IP
	watchClose time.Duration
	parallel   int
	settle     time.Duration
	hold       time.Duration
	waitStdin  bool
	echoFirst  int
	dialTimout time.Duration
	timeout    time.Duration
}

// Result is the JSON line the generator prints.
type Result struct {
	Mode       string  `json:"mode"`
	URL        string  `json:"url"`
	Conns      int     `json:"conns"`
	Size       int     `json:"size,omitempty"`
	Seconds    float64 `json:"seconds"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`

	// echo
	Messages    int64   `json:"messages,omitempty"`
	AllMessages int64   `json:"all_messages,omitempty"` // warm-up included
	MsgsPerSec  float64 `json:"msgs_per_sec,omitempty"`
	MBPerSec    float64 `json:"mb_per_sec,omitempty"`
	P50us       float64 `json:"p50_us,omitempty"`
	P90us       float64 `json:"p90_us,omitempty"`
	P99us       float64 `json:"p99_us,omitempty"`
	MaxUs       float64 `json:"max_us,omitempty"`
	MeanUs      float64 `json:"mean_us,omitempty"`

	// idle
	Connected         int     `json:"connected,omitempty"`
	DialSeconds       float64 `json:"dial_seconds,omitempty"`
	RSSBeforeKiB      int64   `json:"rss_before_kib,omitempty"`
	RSSAfterKiB       int64   `json:"rss_after_kib,omitempty"`
	RSSPerConnKiB     float64 `json:"rss_per_conn_kib,omitempty"`
	GoroutinesBefore  int     `json:"goroutines_before,omitempty"`
	GoroutinesAfter   int     `json:"goroutines_after,omitempty"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn,omitempty"`

	// idle with -watch-close: the second line, once the server has closed
	// every connection (or -watch-close ran out)
	CloseCodes     map[int]int    `json:"close_codes,omitempty"`      // close frames received, by status code
	NoCloseFrame   int            `json:"no_close_frame,omitempty"`   // ended without a close frame
	NoCloseReasons map[string]int `json:"no_close_reasons,omitempty"` // how those ended: EOF, reset, …
	StillOpen      int            `json:"still_open,omitempty"`       // not closed by the server in time
	FirstCloseMs   int64          `json:"first_close_unix_ms,omitempty"`
	LastCloseMs    int64          `json:"last_close_unix_ms,omitempty"`

	// upgrade
	Upgrades       int64   `json:"upgrades,omitempty"`
	AllUpgrades    int64   `json:"all_upgrades,omitempty"` // warm-up included
	UpgradesPerSec float64 `json:"upgrades_per_sec,omitempty"`
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", "ws://127.0.0.1:18000/echo", "WebSocket URL of the echo server")
	flag.StringVar(&c.mode, "mode", "echo", "echo, idle or upgrade")
	flag.IntVar(&c.conns, "conns", 1, "connections (echo, idle) or parallel workers (upgrade)")
	flag.IntVar(&c.size, "size", 64, "message payload size in bytes (echo)")
	flag.BoolVar(&c.text, "text", false, "send text messages (printable ASCII) instead of binary")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "how long to measure (echo, upgrade)")
	flag.DurationVar(&c.warmup, "warmup", 0, "run this long before measuring (echo, upgrade)")
	flag.Int64Var(&c.messages, "messages", 0, "echo: send this many messages in all instead of running for -duration")
	flag.IntVar(&c.serverPID, "server-pid", 0, "idle: PID of the server, to read its RSS")
	flag.IntVar(&c.srcIPs, "src-ips", 256, "spread connections over this many source addresses, -src-base and up (0: let the kernel choose)")
	srcBase := flag.String("src-base", "127.1.0.1", "first source address (loopback)")
	flag.DurationVar(&c.watchClose, "watch-close", 0, "idle, with -wait-stdin: after reporting, read every connection and wait up to this long for the server to close them all; then print a second line with the close codes received")
	flag.IntVar(&c.parallel, "parallel", 64, "idle: connections dialed at once")
	flag.DurationVar(&c.settle, "settle", time.Second, "idle: wait this long after the last connection before measuring")
	flag.DurationVar(&c.hold, "hold", 0, "idle: keep the connections open this long after reporting")
	flag.BoolVar(&c.waitStdin, "wait-stdin", false, "idle: after reporting, keep the connections open until stdin is closed")
	flag.IntVar(&c.echoFirst, "echo-first", 0, "idle: have each connection echo this many messages of -size bytes before it goes idle (what traffic leaves behind)")
	flag.DurationVar(&c.dialTimout, "dial-timeout", 10*time.Second, "timeout of one connect and handshake")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up (exit 1) after this long, whatever the mode")
	flag.Parse()
	if c.srcBase = net.ParseIP(*srcBase).To4(); c.srcBase == nil || !c.srcBase.IsLoopback() {
		fatalf("-src-base %q is not an IPv4 loopback address", *srcBase)
	}

	if c.timeout > 0 {
		time.AfterFunc(c.timeout, func() {
			fmt.Fprintf(os.Stderr, "load: gave up after -timeout %s\n", c.timeout)
			os.Exit(1)
		})
	}
	if c.conns < 1 {
		fatalf("-conns must be at least 1")
	}
	var res Result
	var err error
	switch c.mode {
	case "echo":
		res, err = runEcho(c)
	case "idle":
		res, err = runIdle(c)
	case "upgrade":
		res, err = runUpgrade(c)
	default:
		fatalf("unknown -mode %q", c.mode)
	}
	res.Mode, res.URL, res.Conns = c.mode, c.url, c.conns
	if err != nil && res.FirstError == "" {
		res.FirstError = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		os.Exit(1)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "load: "+format+"\n", a...)
	os.Exit(2)
}

// ---- dialing ----

var srcCounter atomic.Uint32

// dialer returns a WebSocket dialer whose TCP connections each take the next
// source address of a pool of c.srcIPs loopback addresses 127.1.0.1 and up.
func dialer(c config) ws.Dialer {
	return ws.Dialer{
		Timeout: c.dialTimout,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			if c.srcIPs > 0 {
				k := srcCounter.Add(1) % uint32(c.srcIPs)
				ip := make(net.IP, 4)
				binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(c.srcBase)+k) // -src-base + k
				d.LocalAddr = &net.TCPAddr{IP: ip}
			}
			return d.DialContext(ctx, network, addr)
		},
	}
}

// dial opens one WebSocket connection and returns it with a buffered reader
// that holds anything the server sent right after its handshake.
func dial(d ws.Dialer, url string, bufSize int) (net.Conn, *bufio.Reader, error) {
	conn, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, bufSize)
	}
	return conn, br, nil
}

// ---- frames ----

// clientFrame builds a complete masked client frame.
func clientFrame(op ws.OpCode, payload []byte) []byte {
	mask := ws.NewMask()
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: int64(len(payload))}
	var b bytes.Buffer
	b.Grow(ws.HeaderSize(h) + len(payload))
	ws.WriteHeader(&b, h)
	start := b.Len()
	b.Write(payload)
	out := b.Bytes()
	ws.Cipher(out[start:], mask, 0)
	return out
}

var closeFrame = clientFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))

var errProtocol = errors.New("protocol error from server")

// ---- echo ----

type echoConn struct {
	conn net.Conn
	br   *bufio.Reader
	op   ws.OpCode
	out  []byte // the masked frame, sent as is every time
	want []byte // the payload expected back
	in   []byte // receive buffer, len(want)
	hb   []byte // header scratch
	ctl  []byte // control frame payload scratch
	lat  []int64
	n    int64 // measured round trips
	all  int64 // round trips, warm-up included
	err  error
}

// roundTrip sends the message and reads its echo, which may come in
// fragments, answering pings on the way.
func (e *echoConn) roundTrip(verify bool) error {
	if _, err := e.conn.Write(e.out); err != nil {
		return err
	}
	got, first := 0, true
	for {
		h, err := ws.ReadHeaderBuffer(e.br, e.hb)
		if err != nil {
			return err
		}
		if h.Masked || h.Rsv != 0 {
			return fmt.Errorf("%w: masked=%v rsv=%d", errProtocol, h.Masked, h.Rsv)
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 {
				return fmt.Errorf("%w: control frame of %d bytes", errProtocol, h.Length)
			}
			p := e.ctl[:h.Length]
			if _, err := io.ReadFull(e.br, p); err != nil {
				return err
			}
			switch h.OpCode {
			case ws.OpPing:
				if _, err := e.conn.Write(clientFrame(ws.OpPong, p)); err != nil {
					return err
				}
			case ws.OpClose:
				code, reason := ws.ParseCloseFrameData(p)
				return fmt.Errorf("server closed the connection: %d %s", code, reason)
			}
			continue
		}
		switch {
		case first && h.OpCode != e.op:
			return fmt.Errorf("%w: got opcode %v, sent %v", errProtocol, h.OpCode, e.op)
		case !first && h.OpCode != ws.OpContinuation:
			return fmt.Errorf("%w: opcode %v inside a fragmented message", errProtocol, h.OpCode)
		}
		first = false
		if int64(got)+h.Length > int64(len(e.in)) {
			return fmt.Errorf("%w: echo longer than the %d bytes sent", errProtocol, len(e.in))
		}
		n := int(h.Length)
		if _, err := io.ReadFull(e.br, e.in[got:got+n]); err != nil {
			return err
		}
		got += n
		if h.Fin {
			break
		}
	}
	if got != len(e.in) {
		return fmt.Errorf("%w: echo of %d bytes, sent %d", errProtocol, got, len(e.in))
	}
	if verify && !bytes.Equal(e.in, e.want) {
		return fmt.Errorf("%w: echo differs from the message sent", errProtocol)
	}
	return nil
}

// closeConn does the close handshake (briefly) and hangs up.
func closeConn(conn net.Conn, br *bufio.Reader) {
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(closeFrame); err == nil {
		hb := make([]byte, 0, ws.MaxHeaderSize)
		for {
			h, err := ws.ReadHeaderBuffer(br, hb)
			if err != nil {
				break
			}
			if _, err := br.Discard(int(h.Length)); err != nil {
				break
			}
			if h.OpCode == ws.OpClose {
				break
			}
		}
	}
	conn.Close()
}

func payload(size int, text bool) []byte {
	p := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range p {
		if text {
			p[i] = byte(' ' + r.IntN(95))
		} else {
			p[i] = byte(r.Uint32())
		}
	}
	return p
}

// dialAll opens n connections, at most parallel at once. It stops at the
// first failure when stopOnError is set.
func dialAll(c config, n, parallel int, bufSize int, stopOnError bool) ([]net.Conn, []*bufio.Reader, int64, error) {
	d := dialer(c)
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	failed, err := forEach(n, parallel, stopOnError, func(_, i int) error {
		conn, br, err := dial(d, c.url, bufSize)
		if err == nil {
			conns[i], readers[i] = conn, br
		}
		return err
	})
	return conns, readers, failed, err
}

// forEach calls f(w, i) for every i in [0, n) on at most parallel
// goroutines, w being the goroutine's number (for state of its own). It
// returns how many calls failed and the first error; with stopOnError no
// call starts after a failure.
func forEach(n, parallel int, stopOnError bool, f func(w, i int) error) (int64, error) {
	var next, failed atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for w := range min(parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(w, i); err != nil {
					failed.Add(1)
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					if stopOnError {
						next.Store(int64(n))
					}
				}
			}
		})
	}
	wg.Wait()
	return failed.Load(), first
}

func runEcho(c config) (Result, error) {
	var res Result
	res.Size = c.size
	if c.size < 0 || c.size > 64<<20 {
		return res, fmt.Errorf("-size %d out of range 0..64MiB", c.size)
	}
	op := ws.OpBinary
	if c.text {
		op = ws.OpText
	}
	want := payload(c.size, c.text)
	frame := clientFrame(op, want)

	rawConns, readers, failed, err := dialAll(c, c.conns, 64, 16<<10, true)
	if failed > 0 {
		for _, conn := range rawConns {
			if conn != nil {
				conn.Close()
			}
		}
		res.Errors = failed
		return res, fmt.Errorf("dial: %w", err)
	}

	// Split -messages over the connections.
	quota := make([]int64, c.conns)
	if c.messages > 0 {
		for i := range quota {
			quota[i] = c.messages / int64(c.conns)
			if int64(i) < c.messages%int64(c.conns) {
				quota[i]++
			}
		}
	}

	ecs := make([]*echoConn, c.conns)
	for i := range ecs {
		ecs[i] = &echoConn{
			conn: rawConns[i], br: readers[i], op: op,
			out: frame, want: want, in: make([]byte, c.size),
			hb: make([]byte, 0, ws.MaxHeaderSize), ctl: make([]byte, 125),
			lat: make([]int64, 0, 1<<14),
		}
	}

	start := time.Now()
	measureFrom := start.Add(c.warmup)
	end := measureFrom.Add(c.duration)
	var finished atomic.Int64 // latest finish time, for -messages
	var wg sync.WaitGroup
	for i, e := range ecs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.messages > 0 {
				for k := int64(0); k < quota[i]; k++ {
					t1 := time.Now()
					if err := e.roundTrip(e.n < 100 || e.n&63 == 0); err != nil {
						e.err = err
						break
					}
					e.lat = append(e.lat, int64(time.Since(t1)))
					e.n++
					e.all++
				}
				for {
					now := time.Since(start).Nanoseconds()
					old := finished.Load()
					if now <= old || finished.CompareAndSwap(old, now) {
						break
					}
				}
				return
			}
			// Deadline so that a stuck server ends the run too.
			e.conn.SetDeadline(end.Add(10 * time.Second))
			var done int64
			for {
				t1 := time.Now()
				if !t1.Before(end) {
					break
				}
				if err := e.roundTrip(done < 100 || done&63 == 0); err != nil {
					e.err = err
					break
				}
				done++
				e.all++
				if !t1.Before(measureFrom) {
					e.lat = append(e.lat, int64(time.Since(t1)))
					e.n++
				}
			}
		}()
	}
	wg.Wait()

	var all []int64
	for _, e := range ecs {
		res.Messages += e.n
		res.AllMessages += e.all
		all = append(all, e.lat...)
		if e.err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = e.err.Error()
			}
		}
	}
	if c.messages > 0 {
		res.Seconds = time.Duration(finished.Load()).Seconds()
	} else {
		res.Seconds = c.duration.Seconds()
	}
	if res.Seconds > 0 {
		res.MsgsPerSec = float64(res.Messages) / res.Seconds
		res.MBPerSec = res.MsgsPerSec * float64(c.size) / 1e6
	}
	if len(all) > 0 {
		slices.Sort(all)
		pct := func(q float64) float64 {
			return float64(all[int(q*float64(len(all)-1))]) / 1e3
		}
		res.P50us, res.P90us, res.P99us = pct(0.50), pct(0.90), pct(0.99)
		res.MaxUs = float64(all[len(all)-1]) / 1e3
		var sum float64
		for _, v := range all {
			sum += float64(v)
		}
		res.MeanUs = sum / float64(len(all)) / 1e3
	}

	var cwg sync.WaitGroup
	for _, e := range ecs {
		cwg.Add(1)
		go func() { defer cwg.Done(); closeConn(e.conn, e.br) }()
	}
	cwg.Wait()
	if res.Errors > 0 {
		return res, errors.New(res.FirstError)
	}
	return res, nil
}

// ---- idle ----

func runIdle(c config) (Result, error) {
	res := Result{Mode: c.mode, URL: c.url, Conns: c.conns}
	base := procstat.HTTPBase(c.url)
	if c.serverPID > 0 {
		rss, err := procstat.RSSKiB(c.serverPID)
		if err != nil {
			return res, fmt.Errorf("server RSS: %w", err)
		}
		res.RSSBeforeKiB = rss
		res.GoroutinesBefore, _ = procstat.Goroutines(base)
	}

	t0 := time.Now()
	conns, readers, failed, err := dialAll(c, c.conns, c.parallel, 256, false)
	res.DialSeconds = time.Since(t0).Seconds()
	res.Connected = c.conns - int(failed)
	res.Errors = failed
	if err != nil {
		res.FirstError = err.Error()
	}
	if c.echoFirst > 0 {
		if err := echoFirst(c, conns, readers); err != nil {
			return res, fmt.Errorf("-echo-first: %w", err)
		}
	}

	time.Sleep(c.settle)
	res.Seconds = time.Since(t0).Seconds()
	if c.serverPID > 0 {
		if rss, err := procstat.RSSKiB(c.serverPID); err == nil {
			res.RSSAfterKiB = rss
			if res.Connected > 0 {
				res.RSSPerConnKiB = float64(res.RSSAfterKiB-res.RSSBeforeKiB) / float64(res.Connected)
			}
		}
		res.GoroutinesAfter, _ = procstat.Goroutines(base)
		if res.Connected > 0 && res.GoroutinesBefore > 0 && res.GoroutinesAfter > 0 {
			res.GoroutinesPerConn = float64(res.GoroutinesAfter-res.GoroutinesBefore) / float64(res.Connected)
		}
	}

	// Report now; a driver running several generators reads this line and
	// measures the server itself while they all hold their connections.
	json.NewEncoder(os.Stdout).Encode(res)
	os.Stdout.Sync()
	if c.waitStdin && c.watchClose > 0 {
		watchClose(c, res, conns, readers)
	}
	if c.waitStdin {
		io.Copy(io.Discard, os.Stdin)
	}
	time.Sleep(c.hold)
	for _, conn := range conns {
		if conn != nil {
			conn.Close()
		}
	}
	if res.Connected == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return res, nil
}

// echoFirst has every open connection echo c.echoFirst messages of c.size
// bytes, c.parallel connections at a time.
func echoFirst(c config, conns []net.Conn, readers []*bufio.Reader) error {
	op := ws.OpBinary
	if c.text {
		op = ws.OpText
	}
	want := payload(c.size, c.text)
	out := clientFrame(op, want)
	workers := make([]*echoConn, min(c.parallel, len(conns)))
	for w := range workers {
		workers[w] = &echoConn{op: op, out: out, want: want, in: make([]byte, c.size),
			hb: make([]byte, 0, ws.MaxHeaderSize), ctl: make([]byte, 125)}
	}
	_, err := forEach(len(conns), len(workers), true, func(w, i int) error {
		if conns[i] == nil {
			return nil
		}
		e := workers[w]
		e.conn, e.br = conns[i], readers[i]
		for range c.echoFirst {
			if err := e.roundTrip(true); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// watchClose reads every open connection until the server closes it: it
// answers a close frame with the same status, as RFC 6455 asks, and waits for
// the server to hang up. When all have ended, or after c.watchClose, it
// prints a second JSON line with the close codes it saw.
func watchClose(c config, res Result, conns []net.Conn, readers []*bufio.Reader) {
	type ending struct {
		code  int // -1: no close frame
		at    time.Time
		ended bool
		err   error
	}
	endings := make([]ending, len(conns))
	start := time.Now()
	var wg sync.WaitGroup
	for i, conn := range conns {
		if conn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := &endings[i]
			e.code = -1
			br := readers[i]
			if br == nil {
				br = bufio.NewReaderSize(conn, 256)
			}
			hb := make([]byte, 0, ws.MaxHeaderSize)
			var ctl [125]byte
			conn.SetReadDeadline(start.Add(c.watchClose))
			var err error
			for err == nil {
				var h ws.Header
				if h, err = ws.ReadHeaderBuffer(br, hb); err != nil {
					break
				}
				if !h.OpCode.IsControl() || h.Length > 125 {
					_, err = br.Discard(int(h.Length))
					continue
				}
				p := ctl[:h.Length]
				if _, err = io.ReadFull(br, p); err != nil {
					break
				}
				switch h.OpCode {
				case ws.OpPing:
					conn.Write(clientFrame(ws.OpPong, p))
				case ws.OpClose:
					if e.code < 0 {
						code, _ := ws.ParseCloseFrameData(p)
						e.code = int(code)
						var body []byte
						if len(p) > 0 {
							body = ws.NewCloseFrameBody(code, "")
						}
						conn.Write(clientFrame(ws.OpClose, body))
					}
				}
			}
			// EOF or a reset: the server hung up. A deadline: it did not.
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				e.ended, e.at, e.err = true, time.Now(), err
			}
			conn.Close()
		}()
	}
	wg.Wait()
	out := Result{Mode: "close", URL: res.URL, Conns: res.Conns, CloseCodes: map[int]int{}, NoCloseReasons: map[string]int{}}
	var first, last time.Time
	for i, e := range endings {
		if conns[i] == nil {
			continue
		}
		if !e.ended {
			out.StillOpen++
			continue
		}
		if e.code < 0 {
			out.NoCloseFrame++
			out.NoCloseReasons[endReason(e.err)]++
		} else {
			out.CloseCodes[e.code]++
		}
		if first.IsZero() || e.at.Before(first) {
			first = e.at
		}
		if e.at.After(last) {
			last = e.at
		}
	}
	if !last.IsZero() {
		out.FirstCloseMs, out.LastCloseMs = first.UnixMilli(), last.UnixMilli()
	}
	json.NewEncoder(os.Stdout).Encode(out)
	os.Stdout.Sync()
}

// endReason names how a connection ended without a close frame.
func endReason(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case err == nil:
		return "none"
	}
	return err.Error()
}

// ---- upgrade ----

func runUpgrade(c config) (Result, error) {
	var res Result
	d := dialer(c)
	start := time.Now()
	measureFrom := start.Add(c.warmup)
	end := measureFrom.Add(c.duration)

	type worker struct {
		n    int64
		all  int64
		lat  []int64
		err  error
		nerr int64
	}
	workers := make([]*worker, c.conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{lat: make([]int64, 0, 1<<12)}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			hb := make([]byte, 0, ws.MaxHeaderSize)
			rd := bufio.NewReaderSize(nil, 512)
			for {
				t1 := time.Now()
				if !t1.Before(end) {
					return
				}
				if err := upgradeOnce(d, c.url, rd, hb); err != nil {
					w.nerr++
					if w.err == nil {
						w.err = err
					}
					if w.nerr > 100 {
						return
					}
					continue
				}
				w.all++
				if !t1.Before(measureFrom) {
					w.lat = append(w.lat, int64(time.Since(t1)))
					w.n++
				}
			}
		}()
	}
	wg.Wait()

	var all []int64
	for _, w := range workers {
		res.Upgrades += w.n
		res.AllUpgrades += w.all
		res.Errors += w.nerr
		all = append(all, w.lat...)
		if w.err != nil && res.FirstError == "" {
			res.FirstError = w.err.Error()
		}
	}
	res.Seconds = c.duration.Seconds()
	res.UpgradesPerSec = float64(res.Upgrades) / res.Seconds
	if len(all) > 0 {
		slices.Sort(all)
		pct := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))]) / 1e3 }
		res.P50us, res.P90us, res.P99us = pct(0.5), pct(0.9), pct(0.99)
		res.MaxUs = float64(all[len(all)-1]) / 1e3
	}
	if res.Upgrades == 0 && res.Errors > 0 {
		return res, errors.New(res.FirstError)
	}
	return res, nil
}

// upgradeOnce opens a connection, sends a close frame, reads the server's
// close frame and waits for the server to hang up first (as RFC 6455 asks,
// which leaves TIME_WAIT on the server side, not on our ports).
func upgradeOnce(d ws.Dialer, url string, rd *bufio.Reader, hb []byte) error {
	conn, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if br == nil {
		rd.Reset(conn)
		br = rd
	}
	if _, err := conn.Write(closeFrame); err != nil {
		return err
	}
	for {
		h, err := ws.ReadHeaderBuffer(br, hb)
		if err != nil {
			return fmt.Errorf("waiting for the close frame: %w", err)
		}
		if _, err := br.Discard(int(h.Length)); err != nil {
			return err
		}
		if h.OpCode == ws.OpClose {
			break
		}
	}
	// The server closes the TCP connection after its close frame.
	if _, err := br.ReadByte(); err != io.EOF {
		if err == nil {
			return fmt.Errorf("%w: data after the close frame", errProtocol)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil // e.g. reset by peer: closed all the same
		}
		return fmt.Errorf("server did not close the TCP connection: %w", err)
	}
	return nil
}
