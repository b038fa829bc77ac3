package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/mod/module"
)

// version is the release of this binary when the build sets it:
//
//	go build -ldflags "-X main.version=v0.12.0" ./cmd/tidemark
//
// Empty, the build info says: the module's version when installed with
// `go install github.com/tidemark/tidemark/cmd/tidemark@v0.12.0`, else the
// VCS revision the binary was built from (CHANGELOG.md lists the releases).
var version string

// versionString is what `tidemark version` prints after "tidemark ".
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return describeVersion(version, bi)
}

// describeVersion is set if not empty, else the module version of bi, else
// "devel" and the VCS revision, "-dirty" for uncommitted changes.
func describeVersion(set string, bi *debug.BuildInfo) string {
	if set != "" {
		return set
	}
	if bi == nil {
		return "devel"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	// `go install ...@v0.12.0` and a build of a clean checkout at a tag
	// stamp the release; other builds in a checkout stamp a
	// pseudo-version (v0.0.0-TIME-REV, "+dirty") or "(devel)", which the
	// revision says more plainly.
	v := bi.Main.Version
	release := v != "" && v != "(devel)" && !module.IsPseudoVersion(v) && !strings.HasSuffix(v, "+dirty")
	if release || rev == "" && v != "" && v != "(devel)" {
		return v
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v = "devel-" + rev
	if modified == "true" {
		v += "-dirty"
	}
	return v
}

func runVersion(args []string) error {
	fs := newFlags("version", "", "Prints the version of this binary and the Go it was built with.")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	fmt.Printf("tidemark %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
