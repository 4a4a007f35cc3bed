package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

// TestReadyLineNamesTheAddrGiven: the contract (README, SPEC "The example
// server") is that `-addr HOST:PORT` makes the server print a line
// containing `listening on http://HOST:PORT` once it is ready, and
// harnesses wait for exactly that line (interop/lib/server.mjs and
// makerun_test.go do). Started with a host name or a wildcard address, the
// server prints the address the listener resolved it to instead
// (127.0.0.1 for localhost, [::] for 0.0.0.0): a harness that ran
// `echo -addr localhost:9000` waits for its line forever.
func TestReadyLineNamesTheAddrGiven(t *testing.T) {
	for _, host := range []string{"localhost", "0.0.0.0"} {
		t.Run(host, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			require.NoError(t, ln.Close())
			addr := net.JoinHostPort(host, port)

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), mainArgsEnv+"=-addr "+addr)
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			lines := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(out).ReadString('\n')
				lines <- strings.TrimSpace(line)
			}()
			var line string
			select {
			case line = <-lines:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatal("no ready line within 30 s")
			}
			// The server works whatever it printed: only the line is wrong.
			c, _, _, err := ws.Dial(context.Background(), "ws://127.0.0.1:"+port+"/echo")
			if err == nil {
				_ = c.Close()
			}
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			require.NoError(t, cmd.Wait())
			require.NoError(t, err)
			require.Equal(t, "listening on http://"+addr, line)
		})
	}
}
