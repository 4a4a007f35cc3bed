package main

import (
	"bufio"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMakeRunStopsWithSIGINT runs `make run` in a process group of its
// own, as a script's background job (make itself ignores SIGINT there;
// GNU make in a terminal always re-raises a Ctrl-C whatever its recipe
// did), and sends SIGINT to the group once the server says it listens.
// The README: "SIGINT/SIGTERM close every WebSocket with 1001 and exit 0";
// make must then exit 0 too, and print no error.
func TestMakeRunStopsWithSIGINT(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	// trap '' INT: make starts with SIGINT ignored; the Go programs it
	// starts take SIGINT again with signal.Notify.
	cmd := exec.Command("sh", "-c", `trap '' INT; exec make run ADDR="$1"`, "sh", addr)
	cmd.Dir = "../.."
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	want := "listening on http://" + addr
	deadline := time.After(2 * time.Minute)
	var log []string
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("make run ended before listening: %v\n%s", <-exited, strings.Join(log, "\n"))
			}
			log = append(log, l)
			if l == want {
				break wait
			}
		case <-deadline:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("no %q:\n%s", want, strings.Join(log, "\n"))
		}
	}
	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)) // Ctrl-C
	select {
	case err := <-exited:
		for l := range lines { // closed before exited is sent
			log = append(log, l)
		}
		require.NoError(t, err, "make run after Ctrl-C:\n%s", strings.Join(log, "\n"))
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatal("make run did not stop on SIGINT")
	}
}
