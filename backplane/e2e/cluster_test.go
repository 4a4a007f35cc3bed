// Package e2e_test runs the chat of cmd/echo-cluster as three server
// processes sharing one broker (Redis, NATS), with WebSocket clients on
// each, restarts the broker in the middle, and measures the backplanes.
package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ginws/ginws/backplane/nats/natstest"
	"github.com/ginws/ginws/backplane/redis/redistest"
	"github.com/ginws/ginws/ginws"
)

var (
	buildOnce sync.Once
	buildDir  string
	serverBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// echoCluster builds cmd/echo-cluster once (with -race when the tests
// run with it) and returns the binary.
func echoCluster(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "echo-cluster")
		if buildErr != nil {
			return
		}
		serverBin = filepath.Join(buildDir, "echo-cluster")
		args := []string{"build", "-o", serverBin}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/echo-cluster")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/echo-cluster: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return serverBin
}

// instance is one echo-cluster process.
type instance struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	exit chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startInstance(t *testing.T, name string, args ...string) *instance {
	t.Helper()
	in := &instance{t: t, name: name, logs: new(syncBuffer), exit: make(chan error, 1)}
	in.cmd = exec.Command(echoCluster(t), append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	in.cmd.Stderr = in.logs
	stdout, err := in.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, in.cmd.Start())
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on http://"); ok {
				ready <- a
			}
		}
		in.exit <- in.cmd.Wait()
	}()
	select {
	case in.addr = <-ready:
	case err := <-in.exit:
		t.Fatalf("%s exited before it listened: %v\n%s", name, err, in.logs)
	case <-time.After(60 * time.Second):
		_ = in.cmd.Process.Kill()
		t.Fatalf("%s did not start\n%s", name, in.logs)
	}
	t.Cleanup(func() {
		in.stop()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, in.logs)
		}
	})
	return in
}

// stop sends SIGTERM and expects a clean exit.
func (in *instance) stop() {
	if in.cmd.ProcessState != nil || in.exit == nil {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-in.exit:
		assert.NoError(in.t, err, "%s exit", in.name)
	case <-time.After(30 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.exit
		in.t.Errorf("%s did not stop on SIGTERM", in.name)
	}
	in.exit = nil
}

type clusterInfo struct {
	ID    string             `json:"id"`
	State string             `json:"state"`
	Stats ginws.ClusterStats `json:"stats"`
	Conns int                `json:"conns"`
}

func (in *instance) info() clusterInfo {
	in.t.Helper()
	resp, err := http.Get("http://" + in.addr + "/cluster")
	require.NoError(in.t, err)
	defer resp.Body.Close()
	var ci clusterInfo
	require.NoError(in.t, json.NewDecoder(resp.Body).Decode(&ci))
	return ci
}

func waitAll(t *testing.T, insts []*instance, what string, ok func(clusterInfo) bool) {
	t.Helper()
	for _, in := range insts {
		require.Eventually(t, func() bool { return ok(in.info()) }, 30*time.Second, 20*time.Millisecond,
			"%s: %s (now %+v)", in.name, what, in.info())
	}
}

// wsClient is a chat client (gobwas/ws) that records, per sender, the
// sequence numbers it receives in messages "<sender>:<seq>", and every
// one that is not above the last from that sender (a duplicate or a
// reordering).
type wsClient struct {
	t    *testing.T
	nc   net.Conn
	done chan struct{}

	mu       sync.Mutex
	got      map[int]map[int]bool // sender -> seq -> received
	last     map[int]int
	problems []string
}

func dialClient(t *testing.T, url string) *wsClient {
	t.Helper()
	nc, br, _, err := ws.Dial(context.Background(), url)
	require.NoError(t, err)
	c := &wsClient{t: t, nc: nc, done: make(chan struct{}), got: map[int]map[int]bool{}, last: map[int]int{}}
	go func() {
		defer close(c.done)
		var r io.Reader = nc
		if br != nil {
			r = br // holds what arrived with the handshake, then reads nc
		}
		rw := struct {
			io.Reader
			io.Writer
		}{r, nc}
		for {
			msg, err := wsutil.ReadServerText(rw)
			if err != nil {
				return
			}
			c.record(string(msg))
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *wsClient) record(msg string) {
	var from, seq int
	if _, err := fmt.Sscanf(msg, "%d:%d", &from, &seq); err != nil {
		c.mu.Lock()
		c.problems = append(c.problems, "unexpected message "+msg)
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.last[from]; ok && seq <= last {
		c.problems = append(c.problems, fmt.Sprintf("from %d: %d after %d", from, seq, last))
	}
	c.last[from] = seq
	if c.got[from] == nil {
		c.got[from] = map[int]bool{}
	}
	c.got[from][seq] = true
}

// has reports whether every seq in [lo, hi) from sender arrived.
func (c *wsClient) has(sender, lo, hi int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := lo; s < hi; s++ {
		if !c.got[sender][s] {
			return false
		}
	}
	return true
}

// hasAny reports whether any seq >= lo from sender arrived.
func (c *wsClient) hasAny(sender, lo int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	last, ok := c.last[sender]
	return ok && last >= lo
}

func (c *wsClient) send(msg string) {
	c.t.Helper()
	require.NoError(c.t, wsutil.WriteClientText(c.nc, []byte(msg)))
}

func (c *wsClient) close() {
	_ = ws.WriteFrame(c.nc, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	_ = c.nc.Close()
	<-c.done
}

// broker is a Redis or NATS server the test can crash and restart.
type broker struct {
	flag, url     string
	stop, restart func()
}

func TestClusterRedis(t *testing.T) {
	srv := redistest.Start(t)
	testCluster(t, broker{flag: "-redis", url: srv.URL, stop: srv.Kill, restart: srv.Restart})
}

func TestClusterNATS(t *testing.T) {
	srv := natstest.Start(t)
	testCluster(t, broker{flag: "-nats", url: srv.URL, stop: srv.Stop, restart: srv.Restart})
}

// testCluster: 3 instances × 3 clients. Every chat message reaches every
// client exactly once, in order per sender; the broker is restarted
// mid-test: meanwhile each instance keeps delivering its own clients'
// messages locally, afterwards the cluster delivers everything again,
// and nothing is ever duplicated or reordered per sender.
func testCluster(t *testing.T, b broker) {
	const perInstance = 3
	var insts []*instance
	for i := range 3 {
		insts = append(insts, startInstance(t, fmt.Sprintf("instance %d", i), b.flag, b.url))
	}
	waitAll(t, insts, "connected", func(ci clusterInfo) bool { return ci.State == "connected" })

	var clients []*wsClient
	home := map[int]int{} // client -> instance
	for i, in := range insts {
		for range perInstance {
			home[len(clients)] = i
			clients = append(clients, dialClient(t, "ws://"+in.addr+"/chat"))
		}
	}
	waitAll(t, insts, "clients", func(ci clusterInfo) bool { return ci.Conns == perInstance })

	seq := make([]int, len(clients)) // next seq per sender
	mark := func() []int { return append([]int(nil), seq...) }
	send := func(rounds int) {
		for range rounds {
			for i, c := range clients {
				c.send(fmt.Sprintf("%d:%d", i, seq[i]))
				seq[i]++
			}
		}
	}
	waitDelivered := func(what string, lo, hi []int, to func(receiver, sender int) bool) {
		t.Helper()
		for r, c := range clients {
			require.Eventually(t, func() bool {
				for s := range clients {
					if to(r, s) && !c.has(s, lo[s], hi[s]) {
						return false
					}
				}
				return true
			}, 30*time.Second, 10*time.Millisecond, "%s: client %d (on instance %d) is missing messages", what, r, home[r])
		}
	}
	everyone := func(int, int) bool { return true }

	// 1. Every message to every client.
	lo := mark()
	send(20)
	waitDelivered("before the restart", lo, mark(), everyone)

	// 2. The broker goes away: local delivery goes on.
	b.stop()
	waitAll(t, insts, "reconnecting", func(ci clusterInfo) bool { return ci.State == "reconnecting" })
	lo = mark()
	send(5)
	waitDelivered("during the outage, same instance", lo, mark(), func(r, s int) bool { return home[r] == home[s] })

	// 3. The broker is back: every instance reconnects and subscribes on
	// its own. One client per instance sends until all clients have heard
	// from every instance (messages of the outage may still be arriving
	// late, or be lost), then everything reaches everyone again.
	b.restart()
	waitAll(t, insts, "connected again", func(ci clusterInfo) bool { return ci.State == "connected" })
	lo = mark()
	require.Eventually(t, func() bool {
		for i := range insts {
			k := i * perInstance
			clients[k].send(fmt.Sprintf("%d:%d", k, seq[k]))
			seq[k]++
		}
		time.Sleep(20 * time.Millisecond)
		for _, c := range clients {
			for i := range insts {
				if !c.hasAny(i*perInstance, lo[i*perInstance]) {
					return false
				}
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "delivery did not resume after the broker restart")
	lo = mark()
	send(20)
	waitDelivered("after the restart", lo, mark(), everyone)

	// Nothing twice, nothing out of order, nothing foreign; the last
	// message of each sender has arrived, so nothing is still in flight.
	time.Sleep(100 * time.Millisecond)
	for r, c := range clients {
		c.mu.Lock()
		assert.Empty(t, c.problems, "client %d", r)
		c.mu.Unlock()
	}
	for _, in := range insts {
		ci := in.info()
		t.Logf("%s %s: %+v", in.name, ci.ID[:8], ci.Stats)
		assert.Zero(t, ci.Stats.Invalid)
		assert.NotZero(t, ci.Stats.Echoes)
	}
}
