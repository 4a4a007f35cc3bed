package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// maxPayload is the limit the server is started with (and its default):
// a message of exactly this size is echoed, a larger one gets 1009.
const maxPayload = 16 << 20

// The server under test is started lazily, by the first test that needs
// it, and stopped after all tests by TestMain. Starting it inside m.Run
// matters for go test's result cache: the environment variables and files
// the tests consult are recorded only while tests run, so this is where the
// server's source files are opened (see recordServerSources).
var (
	serverOnce sync.Once
	serverAddr string
	serverErr  error
	serverProc *echoProc // nil for an external server
	serverDir  string    // temporary directory of the built binary

	// echoBinary is the path of the built examples/echo, empty when
	// testing an external server.
	echoBinary string
)

// serverUnderTest returns the address of the server, starting it if needed.
func serverUnderTest(t testing.TB) string {
	t.Helper()
	serverOnce.Do(startServerUnderTest)
	if serverErr != nil {
		t.Fatalf("server under test: %v", serverErr)
	}
	return serverAddr
}

func startServerUnderTest() {
	if addr := os.Getenv("GINWS_CONFORMANCE_ADDR"); addr != "" {
		serverAddr = addr
		fmt.Fprintf(os.Stderr, "conformance: testing the server at %s\n", addr)
		return
	}
	root, err := moduleRoot()
	if err != nil {
		serverErr = err
		return
	}
	if err := recordServerSources(root); err != nil {
		serverErr = err
		return
	}
	serverDir, err = os.MkdirTemp("", "ginws-conformance-")
	if err != nil {
		serverErr = err
		return
	}
	bin, err := buildEcho(root, serverDir)
	if err != nil {
		serverErr = fmt.Errorf("building examples/echo: %w", err)
		return
	}
	p, err := startEcho(bin, maxPayload)
	if err != nil {
		serverErr = fmt.Errorf("starting examples/echo: %w", err)
		return
	}
	echoBinary, serverProc, serverAddr = bin, p, p.addr
}

func TestMain(m *testing.M) {
	flag.Parse()
	raiseParallel(12)
	os.Exit(runMain(m))
}

// raiseParallel sets -test.parallel to n unless the command line set it.
func raiseParallel(n int) {
	set := false
	flag.Visit(func(fl *flag.Flag) {
		if fl.Name == "test.parallel" {
			set = true
		}
	})
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}

func runMain(m *testing.M) int {
	code := m.Run()
	if serverProc != nil {
		if err := serverProc.stop(15 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "conformance: stopping examples/echo with SIGTERM: %v\n--- server output ---\n%s\n", err, serverProc.output())
			code = 1
		} else if code != 0 && testing.Verbose() {
			fmt.Fprintf(os.Stderr, "--- server output ---\n%s\n", serverProc.output())
		}
	}
	if deflServerProc != nil {
		if err := deflServerProc.stop(15 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "conformance: stopping examples/echo -deflate with SIGTERM: %v\n--- server output ---\n%s\n", err, deflServerProc.output())
			code = 1
		}
	}
	if serverDir != "" {
		os.RemoveAll(serverDir)
	}
	return checkLeaks(code)
}

func checkLeaks(code int) int {
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "conformance: goroutines leaked by the tests: %v\n", err)
		return 1
	}
	return code
}

func serverRace() bool {
	switch os.Getenv("GINWS_CONFORMANCE_SERVER_RACE") {
	case "0", "false":
		return false
	case "1", "true":
		return true
	}
	return raceEnabled
}

func goTool() (string, error) { return exec.LookPath("go") }

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot() (string, error) {
	gt, err := goTool()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(gt, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// recordServerSources opens every file of the module's own packages that
// examples/echo is built from, plus go.mod and go.sum. The server is built
// by a child process, so without this go test would cache a result that
// does not depend on the library's source; files opened by the test are
// part of the cache key (by size and modification time).
func recordServerSources(root string) error {
	gt, err := goTool()
	if err != nil {
		return err
	}
	cmd := exec.Command(gt, "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./examples/echo")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("go list ./examples/echo: %v\n%s", err, ee.Stderr)
		}
		return fmt.Errorf("go list ./examples/echo: %w", err)
	}
	files := []string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}
	for _, dir := range strings.Fields(string(out)) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		fh.Close()
	}
	return nil
}

// buildEcho builds examples/echo into dir and returns the binary's path.
func buildEcho(root, dir string) (string, error) {
	gt, err := goTool()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "echo")
	args := []string{"build", "-o", bin}
	if serverRace() {
		args = append(args, "-race")
	}
	args = append(args, "./examples/echo")
	cmd := exec.Command(gt, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// echoProc is a running examples/echo.
type echoProc struct {
	addr string
	cmd  *exec.Cmd

	mu  sync.Mutex
	log bytes.Buffer

	exited   chan struct{} // closed once Wait returned
	waitErr  error
	readDone chan struct{} // output reader finished
}

func (p *echoProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startEcho starts the binary on a loopback port of the kernel's choice
// (-addr 127.0.0.1:0: a port picked here and passed on could be taken in
// between) and waits for its ready line, which names the port.
func startEcho(bin string, max int) (*echoProc, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-max-payload", strconv.Itoa(max))
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	pw.Close()
	p := &echoProc{cmd: cmd, exited: make(chan struct{}), readDone: make(chan struct{})}
	const readyLine = "listening on http://"
	ready := make(chan struct{})
	go func() {
		defer close(p.readDone)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line)
			p.log.WriteByte('\n')
			p.mu.Unlock()
			if _, addr, ok := strings.Cut(line, readyLine); ok && !signalled {
				signalled = true
				p.addr, _, _ = strings.Cut(addr, " ")
				close(ready)
			}
		}
		// Drain whatever remains if a line was too long.
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-ready:
		return p, nil
	case <-p.exited:
		<-p.readDone
		return nil, fmt.Errorf("exited before it was ready (%v); output:\n%s", p.waitErr, p.output())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-p.exited
		<-p.readDone
		return nil, fmt.Errorf("no %q line within 60s; output:\n%s", readyLine, p.output())
	}
}

// stop sends SIGTERM and waits for exit status 0.
func (p *echoProc) stop(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	return p.waitExit(timeout)
}

func (p *echoProc) waitExit(timeout time.Duration) error {
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		<-p.readDone
		return fmt.Errorf("still running %v after SIGTERM; killed", timeout)
	}
	<-p.readDone
	if p.waitErr != nil {
		return fmt.Errorf("exit after SIGTERM: %v (want exit status 0)", p.waitErr)
	}
	return nil
}

// kill is for cleanup after a failed test.
func (p *echoProc) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	<-p.readDone
}

// TestGracefulShutdown starts a second instance of the server, opens a few
// connections in different states, sends SIGTERM and expects a close frame
// with 1001 on every one of them, the end of TCP, and exit status 0.
func TestGracefulShutdown(t *testing.T) {
	serverUnderTest(t)
	if echoBinary == "" {
		t.Skip("testing an external server (GINWS_CONFORMANCE_ADDR); cannot signal it")
	}
	p, err := startEcho(echoBinary, maxPayload)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()

	var conns []*wsConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() *wsConn {
		c, err := dialWS(p.addr, "/echo", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.nc.SetDeadline(time.Now().Add(20 * time.Second))
		conns = append(conns, c)
		return c
	}
	// 1: idle. 2: after an echo. 3: in the middle of a fragmented message.
	// 4: after a ping.
	dial()
	c2 := dial()
	if err := c2.writeFrame(txt("before shutdown")); err != nil {
		t.Fatal(err)
	}
	if err := matchExpect(c2, echoText("before shutdown")); err != nil {
		t.Fatal(err)
	}
	c3 := dial()
	if err := c3.writeFrame(fragment(opText, []byte("half a "), false)); err != nil {
		t.Fatal(err)
	}
	c4 := dial()
	if err := c4.writeFrame(ping([]byte("p"))); err != nil {
		t.Fatal(err)
	}
	if err := matchExpect(c4, pongOf([]byte("p"))); err != nil {
		t.Fatal(err)
	}
	// Make sure the server has processed the fragment before the signal.
	time.Sleep(100 * time.Millisecond)

	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		e, err := readEventSkippingPings(c)
		if err != nil {
			t.Errorf("connection %d: waiting for close 1001: %v", i+1, err)
			continue
		}
		if err := closeWantFor(codeGoingAway).match(e); err != nil {
			t.Errorf("connection %d: %v", i+1, err)
			continue
		}
		// Complete the closing handshake and close the socket as a
		// well-behaved client would (a server may wait for the client's
		// FIN after its own before it lets go of the connection).
		_ = c.writeFrame(closeF(codeGoingAway, ""))
		if err := c.awaitTCPClose(tcpCloseTimeout); err != nil {
			t.Errorf("connection %d: %v", i+1, err)
		}
		c.Close()
	}
	if err := p.waitExit(15 * time.Second); err != nil {
		t.Errorf("%v\n--- server output ---\n%s", err, p.output())
	}
	t.Logf("SIGTERM to exit: %v", time.Since(t0))
}

// TestShutdownRightAfterReady sends SIGTERM as soon as the ready line is
// out: the contract is that the server is ready (including its signal
// handling) when it prints the line, so it must still exit with status 0.
func TestShutdownRightAfterReady(t *testing.T) {
	serverUnderTest(t)
	if echoBinary == "" {
		t.Skip("testing an external server (GINWS_CONFORMANCE_ADDR); cannot signal it")
	}
	for i := 0; i < 3; i++ {
		p, err := startEcho(echoBinary, maxPayload)
		if err != nil {
			t.Fatal(err)
		}
		err = p.stop(15 * time.Second)
		p.kill()
		if err != nil {
			t.Fatalf("attempt %d: %v\n--- server output ---\n%s", i+1, err, p.output())
		}
	}
}
