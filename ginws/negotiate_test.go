package ginws

import (
	"compress/flate"
	"strings"
	"testing"

	"github.com/gobwas/httphead"
	"github.com/stretchr/testify/assert"
)

func TestNegotiateDeflate(t *testing.T) {
	cfg := &deflateConfig{level: flate.BestSpeed, serverTakeover: true}
	const (
		pd     = "permessage-deflate"
		plain  = pd
		noCtx  = pd + "; server_no_context_takeover"
		cNoCtx = pd + "; client_no_context_takeover"
	)
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"none", nil, ""},
		{"empty line", []string{""}, ""},
		{"bare", []string{pd}, plain},
		{"name case", []string{"PerMessage-Deflate"}, plain},
		{"other extension only", []string{"x-webkit-deflate-frame"}, ""},
		{"after another", []string{"x-foo; a=1, " + pd}, plain},
		{"second line", []string{"x-foo", pd + "; client_no_context_takeover"}, cNoCtx},
		{"empty elements", []string{" , ,\t" + pd + " ,"}, plain},
		{"browser", []string{pd + "; client_max_window_bits"}, plain},
		{"client bits value", []string{pd + "; client_max_window_bits=10"}, plain},
		{"quoted client bits", []string{pd + `; client_max_window_bits="12"`}, plain},
		{"tabs", []string{pd + "\t;\tserver_no_context_takeover\t"}, noCtx},
		{"spaces around =", []string{pd + "; server_max_window_bits = 15"}, plain + "; server_max_window_bits=15"},
		{"small server window", []string{pd + "; server_max_window_bits=9"}, noCtx + "; server_max_window_bits=9"},
		{"first acceptable wins", []string{pd + "; server_max_window_bits=7, " + pd + "; client_no_context_takeover, " + pd}, cNoCtx},
		{"unknown parameter declined", []string{pd + "; foo, " + pd + "; server_no_context_takeover"}, noCtx},
		{"repeated parameter declined", []string{pd + "; client_no_context_takeover; client_no_context_takeover"}, ""},
		{"flag with value", []string{pd + "; server_no_context_takeover=1"}, ""},
		{"flag with empty quoted value", []string{pd + `; client_no_context_takeover=""`}, ""},
		{"server bits without value", []string{pd + "; server_max_window_bits"}, ""},
		{"bits out of range", []string{pd + "; server_max_window_bits=16", pd + "; client_max_window_bits=7"}, ""},
		{"leading zero", []string{pd + "; server_max_window_bits=010", pd + "; client_max_window_bits=09"}, ""},
		{"empty quoted bits", []string{pd + `; client_max_window_bits=""`}, ""},
		{"escape in bits", []string{pd + `; client_max_window_bits="1\5"`}, ""},
		{"quoted string elsewhere", []string{`x-foo; a="b, c; d", ` + pd}, plain},
		{"malformed: no name", []string{"; a, " + pd}, ""},
		{"malformed: unterminated quote", []string{`x-foo; a="b, ` + pd}, ""},
		{"malformed: junk", []string{pd + " junk"}, ""},
		{"malformed: control byte", []string{"x-foo; a=\"\x01\", " + pd}, ""},
		{"malformed line spoils the others", []string{pd + "; server_max_window_bits=7", "x-foo;;"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, dp := negotiateDeflate(tc.lines, cfg)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.want != "", dp.on)
			if got != "" {
				assert.Equal(t, !strings.Contains(got, "server_no_context_takeover"), dp.serverTakeover)
				assert.Equal(t, strings.Contains(got, "client_no_context_takeover"), dp.clientNoCtx)
				small := strings.Contains(got, "server_max_window_bits=") && !strings.HasSuffix(got, "=15")
				assert.Equal(t, small, dp.level == flate.HuffmanOnly)
			}
		})
	}
}

// FuzzNegotiateDeflate: any header parses without a panic, and what is
// accepted is a permessage-deflate offer in httphead's reading too.
func FuzzNegotiateDeflate(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate; client_max_window_bits",
		`x-foo; a="b\"c", permessage-deflate; server_max_window_bits=10`,
		" ,\tpermessage-deflate;server_no_context_takeover,",
	} {
		f.Add(s)
	}
	cfg := &deflateConfig{level: flate.BestSpeed}
	f.Fuzz(func(t *testing.T, s string) {
		ext, dp := negotiateDeflate([]string{s}, cfg)
		if ext == "" {
			return
		}
		assert.True(t, dp.on)
		if offers, ok := httphead.ParseOptions([]byte(strings.ReplaceAll(s, "\t", " ")), nil); ok {
			var found bool
			for _, o := range offers {
				found = found || strings.EqualFold(string(o.Name), "permessage-deflate")
			}
			assert.True(t, found, "accepted %q, which names no permessage-deflate offer", s)
		}
	})
}

// TestNegotiateDeflateMalformedAfterOffer: negotiateDeflate promises that
// a header that does not parse declines every offer, "the upgrade then
// goes on without compression"; a malformed element after an acceptable
// offer must not be skipped unread.
func TestNegotiateDeflateMalformedAfterOffer(t *testing.T) {
	cfg := &deflateConfig{level: flate.BestSpeed, serverTakeover: true}
	const pd = "permessage-deflate"
	for name, lines := range map[string][]string{
		"junk after a comma": {pd + ", junk junk"},
		"malformed line":     {pd, "x-foo;;"},
	} {
		got, dp := negotiateDeflate(lines, cfg)
		assert.Equal(t, "", got, name)
		assert.False(t, dp.on, name)
	}
	// As a malformed element before the offer, or right behind it, does.
	got, _ := negotiateDeflate([]string{pd + " junk"}, cfg)
	assert.Equal(t, "", got)
}
