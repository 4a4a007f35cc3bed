// Package natstest runs a NATS server inside the test process
// (github.com/nats-io/nats-server/v2) on a free loopback port, for tests
// that need a broker they can stop and start again.
package natstest

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded nats-server.
type Server struct {
	Addr string // 127.0.0.1:port
	URL  string // nats://127.0.0.1:port

	t    testing.TB
	port int

	mu  sync.Mutex
	srv *server.Server
}

// Start starts a server on a free port of 127.0.0.1 and shuts it down
// when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	s := &Server{t: t, port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	s.URL = "nats://" + s.Addr
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Restart starts the server again on the same port after Stop (a no-op
// while it runs) and waits until it accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	var srv *server.Server
	var err error
	// The port may still be held for a moment after a Stop.
	for deadline := time.Now().Add(10 * time.Second); ; {
		srv, err = server.NewServer(&server.Options{
			Host:   "127.0.0.1",
			Port:   s.port,
			NoLog:  true,
			NoSigs: true,
		})
		if err != nil {
			s.t.Fatal(err)
		}
		srv.Start()
		if srv.ReadyForConnections(5 * time.Second) {
			break
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server on %s did not start", s.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.srv = srv
}

// Stop shuts the server down: its clients' connections close, and they
// start reconnecting.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}
