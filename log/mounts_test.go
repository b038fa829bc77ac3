package log

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Small file systems for the disk fault tests, as in
// cmd/tidemark/mounts_test.go: mounting needs root, and tests run as root
// here and in CI.

// cannotMount skips the test, or fails it when CI=true (the CI script sets
// it): in CI a fault test that did not run must not pass unseen.
func cannotMount(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, and this test cannot run: %s", why)
	}
	t.Skipf("cannot run: %s", why)
}

// mountTmpfs mounts a tmpfs of sizeKB kibibytes on a new directory, and
// unmounts it when the test ends.
func mountTmpfs(t *testing.T, sizeKB int) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		cannotMount(t, "mounting test file systems needs Linux")
	}
	if os.Geteuid() != 0 {
		cannotMount(t, "mounting test file systems needs root")
	}
	for _, p := range []string{"mount", "umount"} {
		if _, err := exec.LookPath(p); err != nil {
			cannotMount(t, p+" is not installed")
		}
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dk", sizeKB), "tidemark-test", dir).CombinedOutput(); err != nil {
		cannotMount(t, fmt.Sprintf("mount: %v: %s", err, strings.TrimSpace(string(out))))
	}
	// Cleanups run last in, first out: servers the test starts after this
	// are closed first.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("couldn't unmount the test file system: %v: %s", err, out)
			_ = exec.Command("umount", "-l", dir).Run() // leave no mount behind
		}
	})
	return dir
}

// fillDisk writes a file under dir until the file system is full, and
// returns its path: removing it frees the space again.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for buf := make([]byte, 64<<10); ; {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	// What a 64 KiB write left over.
	for buf := make([]byte, 512); ; {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	return path
}
