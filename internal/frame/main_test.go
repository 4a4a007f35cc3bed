package frame

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// knownBug reports a known bug of the code under test. It skips, so the
// build stays green until the bug is fixed (the test then passes on its
// own), unless GINWS_SHOW_BUGS=1, which makes it fail.
func knownBug(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("GINWS_SHOW_BUGS") == "1" {
		t.Fatalf("BUG: "+format, args...)
	}
	t.Skipf("BUG: "+format, args...)
}
