package frame

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sampleKey = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 section 1.3

// upgradeRequest is a valid opening handshake; edit modifies it.
func upgradeRequest(edit func(r *http.Request)) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/chat", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Sec-WebSocket-Key", sampleKey)
	r.Header.Set("Sec-WebSocket-Version", "13")
	if edit != nil {
		edit(r)
	}
	return r
}

func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(r *http.Request)
		err    *HandshakeError
		status int
	}{
		{"valid", nil, nil, 0},
		{"case-insensitive tokens", func(r *http.Request) {
			r.Header.Set("Upgrade", "WebSocket")
			r.Header.Set("Connection", "UPGRADE")
		}, nil, 0},
		{"connection token list", func(r *http.Request) { r.Header.Set("Connection", "keep-alive, Upgrade") }, nil, 0},
		{"upgrade token list", func(r *http.Request) { r.Header.Set("Upgrade", "h2c, websocket") }, nil, 0},
		// RFC 7230 section 6.7: protocol-name ["/" protocol-version].
		{"upgrade list with a version first", func(r *http.Request) { r.Header.Set("Upgrade", "HTTP/2.0, websocket") }, nil, 0},
		{"upgrade list with a version last", func(r *http.Request) { r.Header.Set("Upgrade", "websocket, h2c/1") }, nil, 0},
		{"Upgrade: websocket/13", func(r *http.Request) { r.Header.Set("Upgrade", "websocket/13") }, ErrNoUpgrade, http.StatusBadRequest},
		{"connection on a second line", func(r *http.Request) {
			r.Header["Connection"] = []string{"keep-alive", "upgrade"}
		}, nil, 0},
		{"HTTP/2.0 request", func(r *http.Request) { r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0 }, nil, 0},

		{"POST", func(r *http.Request) { r.Method = http.MethodPost }, ErrBadMethod, http.StatusMethodNotAllowed},
		{"HEAD", func(r *http.Request) { r.Method = http.MethodHead }, ErrBadMethod, http.StatusMethodNotAllowed},
		{"lower-case get", func(r *http.Request) { r.Method = "get" }, ErrBadMethod, http.StatusMethodNotAllowed},
		{"HTTP/1.0", func(r *http.Request) { r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0 }, ErrBadProto, http.StatusBadRequest},
		{"no Upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, ErrNoUpgrade, http.StatusBadRequest},
		{"Upgrade: h2c", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, ErrNoUpgrade, http.StatusBadRequest},
		{"Upgrade: websockets", func(r *http.Request) { r.Header.Set("Upgrade", "websockets") }, ErrNoUpgrade, http.StatusBadRequest},
		{"no Connection", func(r *http.Request) { r.Header.Del("Connection") }, ErrNoConnection, http.StatusBadRequest},
		{"Connection: keep-alive", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, ErrNoConnection, http.StatusBadRequest},
		{"Connection: upgraded", func(r *http.Request) { r.Header.Set("Connection", "upgraded") }, ErrNoConnection, http.StatusBadRequest},
		{"no version", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }, ErrBadVersion, http.StatusUpgradeRequired},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, ErrBadVersion, http.StatusUpgradeRequired},
		{"version 13 twice", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Version", "13") }, ErrBadVersion, http.StatusUpgradeRequired},
		{"version list", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "13, 8") }, ErrBadVersion, http.StatusUpgradeRequired},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, ErrBadKey, http.StatusBadRequest},
		{"empty key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "") }, ErrBadKey, http.StatusBadRequest},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", sampleKey) }, ErrBadKey, http.StatusBadRequest},
		{"key not base64", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!==") }, ErrBadKey, http.StatusBadRequest},
		{"key of 15 bytes", func(r *http.Request) {
			r.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(make([]byte, 15)))
		}, ErrBadKey, http.StatusBadRequest},
		{"key of 17 bytes", func(r *http.Request) {
			r.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(make([]byte, 17)))
		}, ErrBadKey, http.StatusBadRequest},
		{"key of 18 bytes, 24 characters", func(r *http.Request) {
			r.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(make([]byte, 18)))
		}, ErrBadKey, http.StatusBadRequest},
		{"key without padding", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", strings.TrimRight(sampleKey, "=")) }, ErrBadKey, http.StatusBadRequest},
		{"url-safe key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "-_-_-_-_-_-_-_-_-_-_-w==") }, ErrBadKey, http.StatusBadRequest},
		// The first rule broken is the one reported.
		{"method before everything", func(r *http.Request) {
			r.Method = http.MethodPut
			r.Header = http.Header{}
		}, ErrBadMethod, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := CheckRequest(upgradeRequest(tc.edit))
			if tc.err == nil {
				require.Nil(t, err)
				assert.NotEmpty(t, key)
				return
			}
			require.Same(t, tc.err, err)
			assert.Empty(t, key)
			assert.Equal(t, tc.status, err.Status)
			assert.Contains(t, err.Error(), "websocket: bad handshake: ")
		})
	}
	key, err := CheckRequest(upgradeRequest(nil))
	require.Nil(t, err)
	assert.Equal(t, sampleKey, key)
}

func TestAppendAccept(t *testing.T) {
	// RFC 6455 section 1.3.
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", string(AppendAccept(nil, sampleKey)))
	assert.Equal(t, "x:s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", string(AppendAccept([]byte("x:"), sampleKey)))

	// Any valid key, against a plain computation.
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200 {
		raw := make([]byte, 16)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		key := base64.StdEncoding.EncodeToString(raw)
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		require.Equal(t, base64.StdEncoding.EncodeToString(sum[:]), string(AppendAccept(nil, key)))
	}
}

func TestAppendAcceptAllocations(t *testing.T) {
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() { buf = AppendAccept(buf[:0], sampleKey) })
	assert.Zero(t, allocs)
}

func TestAppendResponse(t *testing.T) {
	tests := []struct {
		name, protocol, extensions, want string
	}{
		{"plain", "", "", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"},
		{"subprotocol", "chat", "", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"},
		{"extensions", "", "permessage-deflate", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"},
		{"both", "chat", "permessage-deflate", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, string(AppendResponse(nil, sampleKey, tc.protocol, tc.extensions, nil)))
		})
	}
}

func TestAppendResponseExtraHeader(t *testing.T) {
	extra := http.Header{
		"X-Request-Id":           {"abc"},
		"Set-Cookie":             {"a=1; Path=/", "b=2"},
		"X-Split":                {" one\r\nInjected: yes\x00 "},
		"Content-Length":         {"5"},
		"Transfer-Encoding":      {"chunked"},
		"Sec-Websocket-Accept":   {"forged"},
		"sec-websocket-protocol": {"forged"},
		"Connection":             {"close"},
		"Bad Name":               {"x"},
		"Bad:Name":               {"x"},
		"":                       {"x"},
	}
	got := string(AppendResponse(nil, sampleKey, "chat", "", extra))
	assert.Equal(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n"+
		"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nX-Request-Id: abc\r\nX-Split: one  Injected: yes \r\n\r\n", got)

	// What net/http's own reader makes of it: every field the application
	// set, none it did not, and the handshake's own fields untouched.
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, []string{"a=1; Path=/", "b=2"}, resp.Header["Set-Cookie"])
	assert.Empty(t, resp.Header.Get("Injected"))
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-WebSocket-Accept"))
	assert.Equal(t, []string{"chat"}, resp.Header["Sec-Websocket-Protocol"])
	assert.Equal(t, []string{"Upgrade"}, resp.Header["Connection"])
	assert.Empty(t, resp.Header["Content-Length"])
	assert.Empty(t, resp.TransferEncoding)
}

func TestSubprotocols(t *testing.T) {
	tests := []struct {
		name   string
		values []string // Sec-WebSocket-Protocol lines; nil for none
		want   []string
		err    *HandshakeError
	}{
		{"none", nil, nil, nil},
		{"one", []string{"chat"}, []string{"chat"}, nil},
		{"list in order", []string{"v2.chat, chat,superchat"}, []string{"v2.chat", "chat", "superchat"}, nil},
		{"several lines", []string{"a, b", "c"}, []string{"a", "b", "c"}, nil},
		{"spaces", []string{"  a ,  b  "}, []string{"a", "b"}, nil},
		{"empty list elements", []string{",a,,b,"}, []string{"a", "b"}, nil}, // RFC 7230 section 7
		{"case kept", []string{"MQTT"}, []string{"MQTT"}, nil},
		{"token characters", []string{"x-y_z.1!#$%&'*+^`|~"}, []string{"x-y_z.1!#$%&'*+^`|~"}, nil},
		{"semicolon", []string{"chat;q=1"}, nil, ErrBadSubprotocol},
		{"slash", []string{"chat/1"}, nil, ErrBadSubprotocol},
		{"quoted", []string{`"chat"`}, nil, ErrBadSubprotocol},
		{"empty value", []string{""}, nil, ErrBadSubprotocol},
		{"bad second line", []string{"chat", "a;b"}, nil, ErrBadSubprotocol},
		{"non-ASCII", []string{"ch\u00e4t"}, nil, ErrBadSubprotocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := upgradeRequest(func(r *http.Request) {
				if tc.values != nil {
					r.Header["Sec-Websocket-Protocol"] = tc.values
				}
			})
			got, err := Subprotocols(r)
			if tc.err != nil {
				require.Same(t, tc.err, err)
				assert.Equal(t, http.StatusBadRequest, err.Status)
				assert.Nil(t, got)
				return
			}
			require.Nil(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestIsUpgradeAndWantsUpgrade(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(r *http.Request)
		is      bool
		wants   bool
		checkOK bool
	}{
		{"valid", nil, true, true, true},
		{"plain GET", func(r *http.Request) { r.Header = http.Header{} }, false, false, false},
		{"POST upgrade", func(r *http.Request) { r.Method = http.MethodPost }, false, true, false},
		{"no Connection", func(r *http.Request) { r.Header.Del("Connection") }, false, true, false},
		{"no Upgrade, key only", func(r *http.Request) { r.Header.Del("Upgrade") }, false, true, false},
		{"Upgrade only", func(r *http.Request) {
			r.Header = http.Header{"Upgrade": {"websocket"}}
		}, false, true, false},
		{"key only", func(r *http.Request) {
			r.Header = http.Header{"Sec-Websocket-Key": {"x"}}
		}, false, true, false},
		{"other upgrade", func(r *http.Request) {
			r.Header = http.Header{"Upgrade": {"h2c"}, "Connection": {"Upgrade, HTTP2-Settings"}}
		}, false, false, false},
		{"bad version still an upgrade", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "7") }, true, true, false},
		{"mixed case", func(r *http.Request) {
			r.Header.Set("Upgrade", "WEBSOCKET")
			r.Header.Set("Connection", "keep-alive, uPgRaDe")
		}, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := upgradeRequest(tc.edit)
			assert.Equal(t, tc.is, IsUpgrade(r), "IsUpgrade")
			assert.Equal(t, tc.wants, WantsUpgrade(r), "WantsUpgrade")
			_, err := CheckRequest(r)
			assert.Equal(t, tc.checkOK, err == nil, "CheckRequest: %v", err)
			if tc.is {
				assert.True(t, tc.wants, "an upgrade is wanted")
			}
		})
	}
}

// TestHeaderListTabs: optional whitespace in HTTP lists is spaces and
// horizontal tabs (RFC 7230 section 3.2.3, 7).
func TestHeaderListTabs(t *testing.T) {
	r := upgradeRequest(func(r *http.Request) {
		r.Header.Set("Connection", "keep-alive,\tUpgrade")
		r.Header["Sec-Websocket-Protocol"] = []string{"chat,\tsuperchat"}
	})
	protos, perr := Subprotocols(r)
	_, cerr := CheckRequest(r)
	assert.Nil(t, cerr, "Connection %q", r.Header.Get("Connection"))
	assert.Nil(t, perr)
	assert.Equal(t, []string{"chat", "superchat"}, protos)
}

// TestHasTokenDoesNotAllocate holds hasToken to its comment.
func TestHasTokenDoesNotAllocate(t *testing.T) {
	h := http.Header{"Connection": {"keep-alive, Upgrade"}}
	allocs := testing.AllocsPerRun(100, func() {
		if !hasToken(h, "Connection", "upgrade") {
			t.Fatal("token not found")
		}
	})
	assert.Zero(t, allocs)
}
