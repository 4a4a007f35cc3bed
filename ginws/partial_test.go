package ginws_test

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/ginws"
)

// Handlers that read part of a message and then hand the connection on:
// to io.Copy (WriteTo), to a later reader, or to OnMessage.

// A handler reads a prefix with Read, then copies the rest with io.Copy
// (Conn.WriteTo): the rest of the message Read began goes first.
func TestWriteToAfterPartialRead(t *testing.T) {
	for _, object := range []bool{false, true} {
		name := "bytes"
		if object {
			name = "object"
		}
		t.Run(name, func(t *testing.T) {
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
				s.Handle(r, "/prefix", func(conn *ginws.Conn, _ *gin.Context) error {
					var prefix [3]byte
					if _, err := io.ReadFull(conn, prefix[:]); err != nil {
						return err
					}
					_, err := io.Copy(conn, conn) // Conn.WriteTo
					return err
				}, ginws.ObjectMode(object))
			})
			c := dial(t, ts.wsURL("/prefix"), nil)
			c.send(ws.OpBinary, []byte("abcdefgh"))
			c.send(ws.OpBinary, []byte("XYZ"))
			_, p := c.readMessage()
			assert.Equal(t, "defgh", string(p), "rest of the first message")
		})
	}
}

// bufio.Reader.WriteTo hands over to Conn.WriteTo with a message half read
// (the reader's buffer is smaller than the message).
func TestBufioWriteToAfterReadString(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/lines", func(conn *ginws.Conn, _ *gin.Context) error {
			br := bufio.NewReaderSize(conn, 16)
			if _, err := br.ReadString('\n'); err != nil {
				return err
			}
			_, err := io.Copy(conn, br)
			return err
		})
	})
	c := dial(t, ts.wsURL("/lines"), nil)
	c.send(ws.OpBinary, []byte("hello\n0123456789abcdefghijklmnopqrstuvwxyz"))
	c.send(ws.OpBinary, []byte("END"))
	var got []byte
	for len(got) < len("0123456789abcdefghijklmnopqrstuvwxyz") {
		_, p := c.readMessage()
		got = append(got, p...)
		if string(p) == "END" {
			break
		}
	}
	require.Equal(t, "0123456789abcdefghijklmnopqrstuvwxyz", string(got))
}

// A reader from NextReader that is read again after its io.EOF, once the
// pump has begun the next message for a handler that wrote meanwhile,
// still returns io.EOF: the next message is left whole for the next call.
func TestNextReaderAfterEOFLeavesNextMessage(t *testing.T) {
	got := make(chan string, 1)
	sent := make(chan struct{})
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/w", func(conn *ginws.Conn, c *gin.Context) error {
			_, mr, err := conn.NextReader(c)
			if err != nil {
				return err
			}
			first, err := io.ReadAll(mr)
			if err != nil {
				return err
			}
			got <- string(first)
			// Write well after the read: the pump starts and reads the
			// next message's first frame.
			time.Sleep(100 * time.Millisecond)
			if err := conn.WriteMessage(c, ginws.MessageText, []byte("wrote")); err != nil {
				return err
			}
			<-sent
			time.Sleep(100 * time.Millisecond)
			var p [16]byte
			if n, err := mr.Read(p[:]); n != 0 || err != io.EOF {
				got <- "old reader: " + string(p[:n])
				return nil
			}
			_, next, err := conn.ReadMessage(c)
			if err != nil {
				return err
			}
			got <- string(next)
			return nil
		})
	})
	c := dial(t, ts.wsURL("/w"), nil)
	c.send(ws.OpText, []byte("first"))
	require.Equal(t, "first", <-got)
	_, p := c.readMessage()
	require.Equal(t, "wrote", string(p))
	c.send(ws.OpText, []byte("second"))
	close(sent)
	assert.Equal(t, "second", <-got)
}

// A handler that reads the start of its first message (a type prefix,
// say), with NextReader or from the byte stream, and then hands the
// connection over to OnMessage: the rest of that message is skipped, as
// the next ReadMessage of a looping handler would skip it, and the next
// message reaches OnMessage.
func TestHandOffAfterPartialRead(t *testing.T) {
	prefixes := map[string]func(conn *ginws.Conn, c *gin.Context) (io.Reader, error){
		"NextReader": func(conn *ginws.Conn, c *gin.Context) (io.Reader, error) {
			_, mr, err := conn.NextReader(c)
			return mr, err
		},
		"stream": func(conn *ginws.Conn, _ *gin.Context) (io.Reader, error) { return conn, nil },
	}
	for name, reader := range prefixes {
		t.Run(name, func(t *testing.T) {
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
				s.Handle(r, "/events", func(conn *ginws.Conn, c *gin.Context) error {
					src, err := reader(conn, c)
					if err != nil {
						return err
					}
					var prefix [2]byte
					if _, err := io.ReadFull(src, prefix[:]); err != nil {
						return err
					}
					conn.OnMessage(func(conn *ginws.Conn, t ginws.MessageType, p []byte) error {
						return conn.WriteMessage(context.Background(), t, p)
					})
					return nil
				})
			})
			c := dial(t, ts.wsURL("/events"), nil)
			c.send(ws.OpText, []byte("v1:login-payload-the-handler-does-not-read"))
			c.send(ws.OpText, []byte("next"))
			f := c.readFrame()
			require.Equal(t, ws.OpText, f.Header.OpCode, "got %v %q", f.Header.OpCode, f.Payload)
			assert.Equal(t, "next", string(f.Payload))
		})
	}
}

// A handler that mixes the APIs: a prefix from the byte stream, a whole
// message with ReadMessage, a write (after which the pump begins the next
// message), then the byte stream again, by io.Copy (WriteTo) or by Read
// followed by ReadMessage, in object mode. The message the pump began is
// read once, and no empty message is made up after it: the message the
// stream had half read was over long before.
func TestStreamAfterMixedReadsTakesPendingOnce(t *testing.T) {
	finishes := map[string]func(conn *ginws.Conn, c *gin.Context) error{
		"WriteTo": func(conn *ginws.Conn, _ *gin.Context) error {
			_, err := io.Copy(conn, conn)
			return err
		},
		"Read then ReadMessage": func(conn *ginws.Conn, c *gin.Context) error {
			var b [64]byte
			for {
				n, err := conn.Read(b[:]) // one message per Read in object mode
				if err != nil {
					return err
				}
				if err := conn.WriteMessage(c, ginws.MessageText, b[:n]); err != nil {
					return err
				}
				_, p, err := conn.ReadMessage(c)
				if err != nil {
					return err
				}
				if err := conn.WriteMessage(c, ginws.MessageText, p); err != nil {
					return err
				}
			}
		},
	}
	for name, finish := range finishes {
		t.Run(name, func(t *testing.T) {
			pumped := make(chan struct{})
			ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
				s.Handle(r, "/mixed", func(conn *ginws.Conn, c *gin.Context) error {
					var prefix [3]byte
					if _, err := io.ReadFull(conn, prefix[:]); err != nil {
						return err
					}
					_, p, err := conn.ReadMessage(c) // drops the rest of the first
					if err != nil {
						return err
					}
					time.Sleep(100 * time.Millisecond) // past pumpDelay: the write starts the pump
					if err := conn.WriteMessage(c, ginws.MessageText, p); err != nil {
						return err
					}
					<-pumped
					time.Sleep(200 * time.Millisecond) // the pump reads the header of "third"
					return finish(conn, c)
				}, ginws.ObjectMode(true))
			})
			c := dial(t, ts.wsURL("/mixed"), nil)
			c.send(ws.OpText, []byte("abcdefgh"))
			c.send(ws.OpText, []byte("second"))
			_, p := c.readMessage()
			require.Equal(t, "second", string(p))
			c.send(ws.OpText, []byte("third"))
			close(pumped)
			_, p = c.readMessage()
			require.Equal(t, "third", string(p))
			c.send(ws.OpText, []byte("fourth"))
			_, p = c.readMessage()
			assert.Equal(t, "fourth", string(p), "the message after the one the pump began")
		})
	}
}

// A handler reads a fixed-size greeting with io.ReadFull in object mode,
// then io.Copy(conn, conn). The greeting came in a fragmented message
// whose last frame is empty (what coder/websocket's Writer and a gorilla
// NextWriter that flushed on a buffer boundary send): Read returned all
// of its bytes but had not seen its end. The end of that message is not a
// message of its own: nothing may reach the peer before the next one.
func TestWriteToAfterExactReadSendsNoEmptyMessage(t *testing.T) {
	ts := newServer(t, func(r *gin.Engine, s *ginws.Server) {
		s.Handle(r, "/greet", func(conn *ginws.Conn, _ *gin.Context) error {
			var hello [5]byte
			if _, err := io.ReadFull(conn, hello[:]); err != nil {
				return err
			}
			_, err := io.Copy(conn, conn) // Conn.WriteTo
			return err
		}, ginws.ObjectMode(true))
	})
	c := dial(t, ts.wsURL("/greet"), nil)
	msg := append(maskedFrame(false, ws.OpBinary, []byte("hello")), maskedFrame(true, ws.OpContinuation, nil)...)
	_, err := c.nc.Write(msg) // one write: the empty last frame is in hand
	require.NoError(t, err)
	c.send(ws.OpBinary, []byte("next"))
	_, p := c.readMessage()
	assert.Equal(t, "next", string(p), "the end of the greeting came back as an empty message")
}
