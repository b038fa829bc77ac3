package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var (
	mdLink      = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	codeSpan    = regexp.MustCompile("`[^`]*`")
	outsideLink = regexp.MustCompile(`(?i)\]\(\s*<?[a-z][a-z0-9+.-]*:|<https?://|^\s*\[[^\]]+\]:\s*\S|href=`)
)

// headingAnchors returns the anchors GitHub gives the headings of a Markdown
// text: lower case, spaces as dashes, punctuation dropped, "-1", "-2" after
// repeats. Lines in fenced code blocks are not headings.
func headingAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
			continue
		}
		if fence {
			continue
		}
		h := strings.TrimLeft(line, "#")
		if len(h) == len(line) || len(line)-len(h) > 6 || !strings.HasPrefix(h, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(h)) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a] = n + 1
			a += "-" + strconv.Itoa(n)
		} else {
			seen[a] = 1
		}
		anchors[a] = true
	}
	return anchors
}

func TestReadmeHeadingAnchors(t *testing.T) {
	got := headingAnchors("# Tidemark\n## OpenTelemetry (OTLP/HTTP logs)\n### The Go client and `tidemark submit`\n```\n# not a heading\n```\n## Performance\n### Performance\n#not\n")
	for _, a := range []string{"tidemark", "opentelemetry-otlphttp-logs", "the-go-client-and-tidemark-submit", "performance", "performance-1"} {
		if !got[a] {
			t.Errorf("no anchor %q in %v", a, got)
		}
	}
	if got["not-a-heading"] || got["not"] {
		t.Errorf("a heading from code or without a space: %v", got)
	}
}

// Every relative link in README.md and docs/*.md reaches a file of the
// repository, and a heading of it when it names an anchor; nothing links
// outside the repository.
func TestReadmeAndDocsLinksResolve(t *testing.T) {
	root := "../.."
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	if len(files) < 10 {
		t.Fatalf("only %d Markdown files: %v", len(files), files)
	}
	anchorsOf := map[string]map[string]bool{}
	anchors := func(path string) map[string]bool {
		if a, ok := anchorsOf[path]; ok {
			return a
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		anchorsOf[path] = headingAnchors(string(b))
		return anchorsOf[path]
	}
	links := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := filepath.Rel(root, file)
		fence := false
		for n, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "```") {
				fence = !fence
				continue
			}
			if fence {
				continue
			}
			line = codeSpan.ReplaceAllString(line, "")
			if outsideLink.MatchString(line) {
				t.Errorf("%s:%d: a link outside the repository (or not a plain relative link): %s", name, n+1, line)
			}
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				links++
				target, anchor, _ := strings.Cut(m[1], "#")
				path := file
				if target != "" {
					path = filepath.Join(filepath.Dir(file), target)
					rel, err := filepath.Rel(root, path)
					if err != nil || strings.HasPrefix(rel, "..") {
						t.Errorf("%s:%d: %s leaves the repository", name, n+1, m[1])
						continue
					}
					if _, err := os.Stat(path); err != nil {
						t.Errorf("%s:%d: %s: no such file", name, n+1, m[1])
						continue
					}
				}
				if anchor == "" {
					continue
				}
				if !strings.HasSuffix(path, ".md") {
					t.Errorf("%s:%d: %s: an anchor into a file that is not Markdown", name, n+1, m[1])
					continue
				}
				if !anchors(path)[anchor] {
					t.Errorf("%s:%d: %s: no heading with the anchor #%s", name, n+1, m[1], anchor)
				}
			}
		}
	}
	if links < 50 {
		t.Errorf("only %d links found: is the link pattern still right?", links)
	}
}
