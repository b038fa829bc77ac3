// Package testmount makes small file systems for the fault tests of the
// log and the witness: a tmpfs to fill up, and an ext4 image on a loop
// device that the kernel can be made to turn read-only while files are
// open (a tmpfs cannot be remounted read-only while a file is open for
// writing). Mounting needs root; tests run as root here and in CI. Only
// tests import it.
package testmount

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CannotMount skips the test, or fails it when CI=true (the CI script sets
// it): in CI a fault test that did not run must not pass unseen.
func CannotMount(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, and this test cannot run: %s", why)
	}
	t.Skipf("cannot run: %s", why)
}

// requireMounting checks that the test can mount file systems and has the
// given programs.
func requireMounting(t testing.TB, programs ...string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		CannotMount(t, "mounting test file systems needs Linux")
	}
	if os.Geteuid() != 0 {
		CannotMount(t, "mounting test file systems needs root")
	}
	for _, p := range append([]string{"mount", "umount"}, programs...) {
		if _, err := exec.LookPath(p); err != nil {
			CannotMount(t, p+" is not installed")
		}
	}
}

func run1(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unmountAtEnd unmounts dir when the test ends. Cleanups run last in,
// first out, so processes the test starts after mounting are killed first.
func unmountAtEnd(t testing.TB, dir string) {
	t.Cleanup(func() {
		if err := run1("umount", dir); err != nil {
			t.Errorf("couldn't unmount the test file system: %v", err)
			_ = run1("umount", "-l", dir) // leave no mount behind
		}
	})
}

// Tmpfs mounts a tmpfs of sizeKB kibibytes on a new directory.
func Tmpfs(t testing.TB, sizeKB int) string {
	t.Helper()
	requireMounting(t)
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run1("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dk", sizeKB), "tidemark-test", dir); err != nil {
		CannotMount(t, err.Error())
	}
	unmountAtEnd(t, dir)
	return dir
}

// ResizeTmpfs changes a mounted tmpfs's size, files open or not: space
// returns (or goes) at once.
func ResizeTmpfs(t testing.TB, dir string, sizeKB int) {
	t.Helper()
	if err := run1("mount", "-o", fmt.Sprintf("remount,size=%dk", sizeKB), dir); err != nil {
		t.Fatal(err)
	}
}

// A Disk is an ext4 image on a loop device, mounted with
// errors=remount-ro.
type Disk struct {
	Dir        string // where it is mounted
	image, dev string
}

// Ext4 makes an ext4 file system of sizeMB mebibytes in an image file,
// attaches it to a loop device and mounts it with errors=remount-ro.
func Ext4(t testing.TB, sizeMB int) *Disk {
	t.Helper()
	requireMounting(t, "mkfs.ext4", "losetup", "e2fsck")
	base := t.TempDir()
	d := &Disk{image: filepath.Join(base, "ext4.img"), Dir: filepath.Join(base, "ext4")}
	if err := os.Mkdir(d.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(d.image)
	if err == nil {
		err = f.Truncate(int64(sizeMB) << 20)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := run1("mkfs.ext4", "-q", "-F", d.image); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", d.image).CombinedOutput()
	if err != nil {
		CannotMount(t, fmt.Sprintf("losetup: %v: %s", err, out))
	}
	d.dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if err := run1("losetup", "-d", d.dev); err != nil {
			t.Errorf("couldn't detach the loop device: %v", err)
		}
	})
	d.mount(t)
	if _, err := os.Stat(d.triggerFile()); err != nil {
		CannotMount(t, "this kernel has no ext4 trigger_fs_error to make a file system read-only: "+err.Error())
	}
	return d
}

func (d *Disk) triggerFile() string {
	return filepath.Join("/sys/fs/ext4", filepath.Base(d.dev), "trigger_fs_error")
}

func (d *Disk) mount(t testing.TB) {
	t.Helper()
	if err := run1("mount", "-t", "ext4", "-o", "errors=remount-ro", d.dev, d.Dir); err != nil {
		CannotMount(t, err.Error())
	}
	unmountAtEnd(t, d.Dir)
}

// TakesWrites reports whether a new file can be made on the file system.
func (d *Disk) TakesWrites() bool {
	p := filepath.Join(d.Dir, "write-test")
	f, err := os.Create(p)
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(p)
	return true
}

// FailAndGoReadOnly reports a file system error to ext4, as the kernel does
// when it finds corruption: with errors=remount-ro it aborts the journal and
// refuses writes from then on, files open or not. It returns once a write
// is refused.
func (d *Disk) FailAndGoReadOnly(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(d.triggerFile(), []byte("1"), 0o200); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); d.TakesWrites(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the file system still takes writes after trigger_fs_error")
		}
	}
}

// RemountReadWrite tries to make the file system writable again in place,
// and reports whether it takes writes afterwards. Current kernels refuse
// this after an emergency read-only (the journal is aborted): the file
// system must be unmounted and checked (Repair).
func (d *Disk) RemountReadWrite(t testing.TB) bool {
	t.Helper()
	// --options-mode ignore: mount(8) would pass back the "emergency_ro"
	// that /proc/mounts shows, which ext4 does not take as an option.
	err := run1("mount", "--options-mode", "ignore", "-o", "remount,rw", d.Dir)
	t.Logf("remount read-write: %v; takes writes: %v", err, d.TakesWrites())
	return d.TakesWrites()
}

// Repair unmounts the file system, checks it with e2fsck (which replays
// the journal) and mounts it again. Nothing may have a file open on it.
func (d *Disk) Repair(t testing.TB) {
	t.Helper()
	if err := run1("umount", d.Dir); err != nil {
		t.Fatal(err)
	}
	// e2fsck exits 1 when it corrected something, as it does after an
	// aborted journal; 4 and above mean errors left uncorrected.
	err := run1("e2fsck", "-f", "-y", d.dev) // the device, not the image: no stale block cache
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() < 4) {
		t.Fatal(err)
	}
	if err := run1("mount", "-t", "ext4", "-o", "errors=remount-ro", d.dev, d.Dir); err != nil {
		t.Fatal(err)
	}
}

// Fill writes a file of zeros on dir's file system until it is full, and
// returns its path: removing it is space returning.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// 64 KiB at a time, then what a 64 KiB write left over.
	for _, size := range []int{64 << 10, 512} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	return p
}
