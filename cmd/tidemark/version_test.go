package main

import (
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
		{"-ldflags -X wins", "v0.11.0", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20260101000000-8b29c77e12ab"}, Settings: vcs(rev, "false")}, "v0.11.0"},
		{"go install @v0.11.0", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.11.0"}}, "v0.11.0"},
		{"clean checkout at a tag", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.11.0"}, Settings: vcs(rev, "false")}, "v0.11.0"},
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
