package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionDescribed(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "8b29c77e12ab34cd56ef8b29c77e12ab34cd56ef"
	for _, c := range []struct {
		name, set string
		bi        *debug.BuildInfo
		want      string
	}{
		{"-ldflags -X wins", "v0.12.0", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20260101000000-8b29c77e12ab"}, Settings: vcs(rev, "false")}, "v0.12.0"},
		{"go install @v0.12.0", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.12.0"}}, "v0.12.0"},
		{"clean checkout at a tag", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.12.0"}, Settings: vcs(rev, "false")}, "v0.12.0"},
		{"checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20260101000000-8b29c77e12ab"}, Settings: vcs(rev, "false")}, "devel-8b29c77e12ab"},
		{"dirty checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.11.1-0.20260101000000-8b29c77e12ab+dirty"}, Settings: vcs(rev, "true")}, "devel-8b29c77e12ab-dirty"},
		{"without VCS", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{"no build info", "", nil, "devel"},
	} {
		if got := describeVersion(c.set, c.bi); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// `tidemark version` and `tidemark --version` print the same line. The
// binary under test names a revision, or only "devel" when the build
// stamps no VCS information (-buildvcs=false, a git worktree).
func TestVersionCommand(t *testing.T) {
	dir := t.TempDir()
	a, code := run(t, dir, "version")
	if code != 0 {
		t.Fatalf("tidemark version: exit %d: %s", code, a)
	}
	if ok, _ := regexp.MatchString(`^tidemark (v\S+|devel(-[0-9a-f]{12}(-dirty)?)?) go\S+ \S+/\S+\n$`, a); !ok {
		t.Errorf("tidemark version: %q", a)
	}
	if b, code := run(t, dir, "--version"); code != 0 || b != a {
		t.Errorf("tidemark --version: exit %d, %q; version said %q", code, b, a)
	}
	if out, _ := run(t, dir, "help"); !strings.Contains(out, "tidemark version") {
		t.Errorf("help does not list version:\n%s", out)
	}
}

// A build of a clean checkout at a release tag prints the tag: the
// release CHANGELOG.md names first. The test clones this repository's
// committed HEAD, tags the clone with that release (a local tag, so it
// runs whether or not the tag was fetched), builds it with VCS stamping
// and runs `tidemark version`.
func TestVersionOfTaggedBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary from a clone")
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	changelog, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^## (v\d+\.\d+\.\d+) — \d{4}-\d{2}-\d{2}$`).FindSubmatch(changelog)
	if m == nil {
		t.Fatal(`CHANGELOG.md names no release: want a heading "## vX.Y.Z — YYYY-MM-DD"`)
	}
	release := string(m[1])
	top, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	dir := t.TempDir()
	clone := filepath.Join(dir, "src")
	for _, args := range [][]string{
		{"clone", "-q", "--no-tags", strings.TrimSpace(string(top)), clone},
		{"-C", clone, "-c", "user.name=t", "-c", "user.email=t@t", "tag", "-a", "-m", release, release},
	} {
		if out, err := exec.Command(git, args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	bin := filepath.Join(dir, "tidemark")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/tidemark")
	build.Dir = clone
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in the clone: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("tidemark version: %v", err)
	}
	if want := "tidemark " + release + " "; !strings.HasPrefix(string(out), want) {
		t.Errorf("a build at tag %s prints %q, want it to begin %q", release, out, want)
	}
}
