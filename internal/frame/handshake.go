package frame

import (
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
)

// HandshakeError is an opening handshake the server must refuse, with the
// HTTP status to answer.
type HandshakeError struct {
	Status int
	Reason string
}

func (e *HandshakeError) Error() string { return "websocket: bad handshake: " + e.Reason }

// The handshake rules of RFC 6455 section 4.2.1.
var (
	ErrBadMethod      = &HandshakeError{http.StatusMethodNotAllowed, "method is not GET"}
	ErrBadProto       = &HandshakeError{http.StatusBadRequest, "HTTP version below 1.1"}
	ErrNoUpgrade      = &HandshakeError{http.StatusBadRequest, `no "Upgrade: websocket" header`}
	ErrNoConnection   = &HandshakeError{http.StatusBadRequest, `no "Connection: Upgrade" header`}
	ErrBadVersion     = &HandshakeError{http.StatusUpgradeRequired, "Sec-WebSocket-Version is not 13"}
	ErrBadKey         = &HandshakeError{http.StatusBadRequest, "Sec-WebSocket-Key is not 16 base64-encoded bytes"}
	ErrBadSubprotocol = &HandshakeError{http.StatusBadRequest, "malformed Sec-WebSocket-Protocol header"}
)

// IsUpgrade reports whether r asks to switch to WebSocket: a GET with
// "Upgrade: websocket" and "Connection: upgrade" tokens.
func IsUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet &&
		hasToken(r.Header, "Upgrade", "websocket") &&
		hasToken(r.Header, "Connection", "upgrade")
}

// WantsUpgrade reports whether r is an attempt at a WebSocket handshake,
// valid or not: it names websocket in Upgrade or carries a key. Such a
// request is answered by CheckRequest's status, never as plain HTTP.
func WantsUpgrade(r *http.Request) bool {
	return len(r.Header["Sec-Websocket-Key"]) > 0 || hasToken(r.Header, "Upgrade", "websocket")
}

// CheckRequest applies the handshake rules to r and returns the client's
// key.
func CheckRequest(r *http.Request) (key string, err *HandshakeError) {
	if r.Method != http.MethodGet {
		return "", ErrBadMethod
	}
	if !r.ProtoAtLeast(1, 1) {
		return "", ErrBadProto
	}
	if !hasToken(r.Header, "Upgrade", "websocket") {
		return "", ErrNoUpgrade
	}
	if !hasToken(r.Header, "Connection", "upgrade") {
		return "", ErrNoConnection
	}
	if v := r.Header["Sec-Websocket-Version"]; len(v) != 1 || v[0] != "13" {
		return "", ErrBadVersion
	}
	k := r.Header["Sec-Websocket-Key"]
	if len(k) != 1 || !validKey(k[0]) {
		return "", ErrBadKey
	}
	return k[0], nil
}

func validKey(k string) bool {
	if len(k) != 24 {
		return false
	}
	var raw [18]byte
	n, err := base64.StdEncoding.Decode(raw[:], []byte(k))
	return err == nil && n == 16
}

// hasToken looks for token in the comma-separated values of header name,
// case-insensitively, without allocating. Other elements need not be
// tokens: Upgrade lists protocols with versions ("HTTP/2.0, websocket").
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.Trim(t, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// Subprotocols returns the subprotocols the client offers, in its order of
// preference.
func Subprotocols(r *http.Request) ([]string, *HandshakeError) {
	var out []string
	for _, v := range r.Header["Sec-Websocket-Protocol"] {
		ok := tokenList(v, func(t string) bool {
			out = append(out, t)
			return true
		})
		if !ok {
			return nil, ErrBadSubprotocol
		}
	}
	return out, nil
}

// tokenList calls f with each element of v, a comma-separated list of
// tokens (RFC 7230 section 7: optional whitespace, spaces or tabs, around
// the elements, and empty elements ignored), until f returns false. It
// reports false when it meets an element that is not a token, or when the
// list holds none.
func tokenList(v string, f func(string) bool) bool {
	seen := false
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		t = strings.Trim(t, " \t")
		if t == "" {
			continue
		}
		if !isToken(t) {
			return false
		}
		seen = true
		if !f(t) {
			return true
		}
	}
	return seen
}

// isToken reports whether s is made of RFC 7230's tchar only.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AppendAccept appends the Sec-WebSocket-Accept value for key.
func AppendAccept(b []byte, key string) []byte {
	var buf [24 + len(acceptGUID)]byte
	copy(buf[copy(buf[:], key):], acceptGUID)
	sum := sha1.Sum(buf[:])
	var enc [28]byte
	base64.StdEncoding.Encode(enc[:], sum[:])
	return append(b, enc[:]...)
}

// AppendResponse appends the 101 response that completes the handshake.
// protocol and extensions are left out when empty. extra holds headers the
// application set before the upgrade (say, a request id or a cookie from
// middleware); see AppendExtraHeader for which of them are written.
func AppendResponse(b []byte, key, protocol, extensions string, extra http.Header) []byte {
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = AppendAccept(b, key)
	if protocol != "" {
		b = append(b, "\r\nSec-WebSocket-Protocol: "...)
		b = append(b, protocol...)
	}
	if extensions != "" {
		b = append(b, "\r\nSec-WebSocket-Extensions: "...)
		b = append(b, extensions...)
	}
	b = append(b, "\r\n"...)
	if len(extra) > 0 {
		b = AppendExtraHeader(b, extra)
	}
	return append(b, "\r\n"...)
}

// AppendExtraHeader appends h's fields in sorted order, each line ended by
// CRLF, leaving out what a 101 response must not carry or what the
// handshake itself writes: the handshake's own fields, a body's length or
// coding, and names that are not HTTP tokens. Line breaks inside a value
// become spaces, as net/http writes them, so a value cannot add a field.
func AppendExtraHeader(b []byte, h http.Header) []byte {
	keys := make([]string, 0, len(h))
	for k := range h {
		if validFieldName(k) && !handshakeOwned(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendFieldValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// handshakeOwned reports whether the field k is written by the handshake
// or has no place in a 101 response (RFC 9110 sections 8.6 and 6.1).
func handshakeOwned(k string) bool {
	for _, o := range [...]string{
		"Upgrade", "Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol",
		"Sec-Websocket-Extensions", "Content-Length", "Transfer-Encoding", "Trailer",
	} {
		if strings.EqualFold(k, o) {
			return true
		}
	}
	return false
}

// validFieldName reports whether k is an HTTP token (RFC 9110 section 5.1).
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// appendFieldValue appends v trimmed of surrounding blanks, with CR, LF
// and other control bytes but tab turned into spaces.
func appendFieldValue(b []byte, v string) []byte {
	v = strings.Trim(v, " \t")
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}
