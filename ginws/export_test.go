package ginws

// SetPumpExitHook makes every control pump run h as it leaves, before its
// flag is taken down, until the test ends.
func SetPumpExitHook(t interface{ Cleanup(func()) }, h func()) {
	pumpExitHook.Store(&h)
	t.Cleanup(func() { pumpExitHook.Store(nil) })
}

// ErrCloseTimeout is how a connection whose peer did not answer its close
// frame in time ended.
var ErrCloseTimeout = errCloseTimeout
