// Package e2e holds black-box tests of the corral binary: each test starts
// its own `corral serve` as a subprocess on a free loopback port and talks
// to it over raw frames, the Go client, the `corral client` command and an
// emulation of the upstream Python client.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// corralBin is the binary built once by TestMain.
var corralBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "corral-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: temp dir: %v\n", err)
		os.Exit(1)
	}
	corralBin = filepath.Join(dir, "corral")
	build := exec.Command("go", "build", "-o", corralBin, "github.com/corral-dev/corral/cmd/corral")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build corral: %v\n", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}
