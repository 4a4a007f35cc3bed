package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"
)

// mainArgsEnv, when set, makes the test binary run main with these
// arguments instead of the tests: the tests below start the real example
// server, signal handling and http.Server settings included, as a child
// process.
const mainArgsEnv = "GINWS_ECHO_MAIN_ARGS"

func init() {
	if args, ok := os.LookupEnv(mainArgsEnv); ok {
		os.Args = append([]string{os.Args[0]}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
}

// startMain runs main in a child process on a free port of 127.0.0.1 and
// returns it with the address it listens on.
func startMain(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainArgsEnv+"=-addr 127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on http://")
	require.True(t, ok, "ready line: %q", line)
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd, addr
}

// TestSIGTERMWithSlowRequestBody: a client sends a plain HTTP request
// whose body never finishes (a slowloris on the body: ReadHeaderTimeout
// does not cover it, and net/http reads up to 256 KiB of an unread body
// after the handler, with no deadline). The README promises that SIGTERM
// closes every WebSocket with 1001 and exits 0; the stuck request must not
// turn that into a failed shutdown, nor hold its goroutine forever.
func TestSIGTERMWithSlowRequestBody(t *testing.T) {
	cmd, addr := startMain(t)

	wsc, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/echo")
	require.NoError(t, err)
	defer wsc.Close()
	var wsr io.Reader = wsc
	if br != nil {
		wsr = io.MultiReader(br, wsc)
	}

	slow, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer slow.Close()
	_, err = slow.Write([]byte("GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 100\r\n\r\nabc"))
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond) // let the server take the request in

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))

	require.NoError(t, wsc.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, _, err = wsutil.ReadServerData(struct {
		io.Reader
		io.Writer
	}{wsr, wsc})
	var ce wsutil.ClosedError
	require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
	require.Equal(t, ws.StatusGoingAway, ce.Code)

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after SIGTERM with a slow request body in flight")
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after SIGTERM")
	}
}
