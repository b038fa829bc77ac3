package deploy

import (
	"archive/tar"
	"bufio"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/tidemark/tidemark/deploy/container"
)

const (
	dockerfile  = "container/Dockerfile"
	composeFile = "compose/compose.yaml"
)

// TestContainerImage builds the static binary, assembles the image with
// deploy/container (no daemon), writes it as a tarball, reads it back, and
// checks its config, that its one layer holds a static binary, and that
// the binary taken out of the layer runs.
func TestContainerImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tidemark")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v0.0.0-container", "-o", bin, "../cmd/tidemark")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ca := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(ca); err != nil {
		t.Skipf("no CA certificates on this host (apt-get install ca-certificates): %v", err)
	}
	img, err := container.Image(bin, ca, "v0.0.0-container")
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(tarPath, name.MustParseReference("tidemark:test"), img); err != nil {
		t.Fatal(err)
	}
	img, err = tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatalf("reading the tarball back: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != container.User || strings.HasPrefix(c.User, "0") || c.User == "" || c.User == "root" {
		t.Errorf("User %q, want %s (non-root)", c.User, container.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/tidemark"}) {
		t.Errorf("Entrypoint %q, want [/tidemark]", c.Entrypoint)
	}
	if _, ok := c.Volumes["/var/lib/tidemark"]; !ok {
		t.Errorf("Volumes %v lack /var/lib/tidemark", c.Volumes)
	}
	for _, p := range container.Ports {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("ExposedPorts %v lack %s", c.ExposedPorts, p)
		}
	}
	if c.Labels["org.opencontainers.image.version"] != "v0.0.0-container" || c.Labels["org.opencontainers.image.source"] == "" {
		t.Errorf("Labels %v", c.Labels)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	extracted := filepath.Join(dir, "extracted-tidemark")
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
		switch h.Name {
		case "tidemark":
			f, err := os.OpenFile(extracted, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		case "etc/passwd":
			b, _ := io.ReadAll(tr)
			if !strings.Contains(string(b), ":65532:65532:") {
				t.Errorf("/etc/passwd has no user 65532: %q", b)
			}
		}
	}
	for _, f := range []string{"tidemark", "etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "var/lib/tidemark"} {
		if files[f] == nil {
			t.Errorf("the layer lacks /%s", f)
		}
	}
	if h := files["var/lib/tidemark"]; h != nil && (h.Uid != container.UID || h.Typeflag != tar.TypeDir) {
		t.Errorf("/var/lib/tidemark: uid %d type %c, want a directory of %d", h.Uid, h.Typeflag, container.UID)
	}
	if h := files["tidemark"]; h != nil && h.Mode&0o111 == 0 {
		t.Errorf("/tidemark mode %o is not executable", h.Mode)
	}

	// Static: no program interpreter, no dynamic section.
	ef, err := elf.Open(extracted)
	if err != nil {
		t.Fatalf("/tidemark is not ELF: %v", err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("/tidemark has a %v program header: not static", p.Type)
		}
	}
	if ef.Section(".dynamic") != nil {
		t.Error("/tidemark has a .dynamic section: not static")
	}
	ef.Close()

	out, err := exec.Command(extracted, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v0.0.0-container") {
		t.Errorf("/tidemark version: %v\n%s", err, out)
	}
	out, _ = exec.Command(extracted, "log", "--help").CombinedOutput()
	if !strings.Contains(string(out), "-mysql") {
		t.Errorf("/tidemark log --help:\n%s", out)
	}
	d, _ := img.Digest()
	t.Logf("image %s, %d files in its layer", d, len(files))
}

// dockerStage is one FROM ... of a Dockerfile and its instructions.
type dockerStage struct {
	from  string
	instr [][2]string // instruction (upper case), arguments
}

// parseDockerfile reads a Dockerfile: comments, continuation lines, one
// instruction a line.
func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []dockerStage
	var cont string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cont == "" && (line == "" || line[0] == '#') {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cont += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, cont = cont+line, ""
		ins, args, _ := strings.Cut(line, " ")
		ins, args = strings.ToUpper(ins), strings.TrimSpace(args)
		if ins == "FROM" {
			stages = append(stages, dockerStage{from: args})
			continue
		}
		if len(stages) == 0 {
			if ins == "ARG" {
				continue
			}
			t.Fatalf("%s: %s before FROM", path, ins)
		}
		s := &stages[len(stages)-1]
		s.instr = append(s.instr, [2]string{ins, args})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

func (s dockerStage) all(ins string) []string {
	var v []string
	for _, i := range s.instr {
		if i[0] == ins {
			v = append(v, i[1])
		}
	}
	return v
}

// TestDockerfile checks the Dockerfile against the image deploy/container
// makes, so that the two cannot drift: the final stage is scratch or
// distroless static, runs as the same non-root user, with the same
// entrypoint, ports and volume; the binary is built with CGO_ENABLED=0,
// -trimpath and the version stamped; the CA certificates are copied in.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, dockerfile)
	if len(stages) < 2 {
		t.Fatalf("%s: %d stages, want a builder and the image", dockerfile, len(stages))
	}
	final := stages[len(stages)-1]
	if final.from != "scratch" && !strings.HasPrefix(final.from, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s, want scratch or distroless static", final.from)
	}
	if u := final.all("USER"); len(u) != 1 || u[0] != container.User {
		t.Errorf("final stage USER %q, want %s", u, container.User)
	}
	var ep []string
	if e := final.all("ENTRYPOINT"); len(e) != 1 || json.Unmarshal([]byte(e[0]), &ep) != nil || !slices.Equal(ep, container.Entrypoint) {
		t.Errorf("final stage ENTRYPOINT %q, want the exec form %q", e, container.Entrypoint)
	}
	var ports []string
	for _, e := range final.all("EXPOSE") {
		for _, p := range strings.Fields(e) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			ports = append(ports, p)
		}
	}
	if slices.Sort(ports); !slices.Equal(ports, slices.Sorted(slices.Values(container.Ports))) {
		t.Errorf("EXPOSE %q, the Go-built image %q", ports, container.Ports)
	}
	var vol []string
	if v := final.all("VOLUME"); len(v) != 1 || json.Unmarshal([]byte(v[0]), &vol) != nil || !slices.Equal(vol, []string{container.StateDir}) {
		t.Errorf("VOLUME %q, want [%q]", v, container.StateDir)
	}
	copies := strings.Join(final.all("COPY"), "\n")
	for _, want := range []string{container.CACertFile, "/etc/passwd", " " + container.Binary} {
		if !strings.Contains(copies, want) {
			t.Errorf("final stage copies no %s", want)
		}
	}
	if !strings.Contains(copies, "--chown=65532:65532") {
		t.Errorf("final stage does not give %s to the user", container.StateDir)
	}
	build := regexp.MustCompile(`CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=\$VERSION" -o /out/tidemark \./cmd/tidemark`)
	found := false
	for _, s := range stages[:len(stages)-1] {
		for _, r := range s.all("RUN") {
			found = found || build.MatchString(r)
		}
	}
	if !found {
		t.Errorf("no builder stage RUNs %s", build)
	}
	if _, err := os.Stat("../.dockerignore"); err != nil {
		t.Errorf("the build context (the repository) has no .dockerignore: %v", err)
	}
}

// composeService is a service of compose.yaml as this test reads it.
type composeService struct {
	command []string
	env     []string
	health  []string
}

var (
	composeServiceLine = regexp.MustCompile(`^  ([a-z0-9-]+):`)
	composeCommand     = regexp.MustCompile(`^    command: (\[.*\])$`)
	composeEnv         = regexp.MustCompile(`^      (TIDEMARK_[A-Z0-9_]+):`)
	composeHealth      = regexp.MustCompile(`^      test: (\[.*\])$`)
)

// parseCompose reads the services of our compose.yaml (block style, two
// spaces an indent; a service's command and healthcheck in flow style).
func parseCompose(t *testing.T) map[string]*composeService {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	services := map[string]*composeService{}
	var cur *composeService
	inServices := false
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" && line[0] != ' ' && line[0] != '#' {
			inServices = line == "services:"
			cur = nil
			continue
		}
		if !inServices {
			continue
		}
		if m := composeServiceLine.FindStringSubmatch(line); m != nil {
			cur = &composeService{}
			services[m[1]] = cur
			continue
		}
		if cur == nil {
			continue
		}
		if m := composeCommand.FindStringSubmatch(line); m != nil {
			if err := json.Unmarshal([]byte(m[1]), &cur.command); err != nil {
				t.Fatalf("%s: %q: %v", composeFile, line, err)
			}
		}
		if m := composeEnv.FindStringSubmatch(line); m != nil {
			cur.env = append(cur.env, m[1])
		}
		if m := composeHealth.FindStringSubmatch(line); m != nil {
			if err := json.Unmarshal([]byte(m[1]), &cur.health); err != nil {
				t.Fatalf("%s: %q: %v", composeFile, line, err)
			}
		}
	}
	return services
}

// TestComposeFlags checks compose.yaml: the services are there; each
// tidemark service's subcommand has the flags its command gives and reads
// the TIDEMARK_ variables its environment sets; every TIDEMARK_ variable
// the file names is one some subcommand reads; the healthchecks run
// `/tidemark healthcheck` on the service's own port.
func TestComposeFlags(t *testing.T) {
	services := parseCompose(t)
	for _, s := range []string{"mariadb", "keys", "w1", "w2", "w3", "policy", "log", "auditor"} {
		if services[s] == nil {
			t.Errorf("%s: no service %s", composeFile, s)
		}
	}
	flags := map[string]map[string]bool{}
	for _, sub := range []string{"log", "witness", "audit"} {
		flags[sub] = helpFlags(t, sub)
	}
	subOf := map[string]string{"log": "log", "w1": "witness", "w2": "witness", "w3": "witness", "auditor": "audit"}
	for svc, sub := range subOf {
		s := services[svc]
		if s == nil {
			continue
		}
		cmd := s.command
		if svc == "w2" || svc == "w3" {
			cmd = services["w1"].command // merged from w1's anchor
		}
		if len(cmd) == 0 || cmd[0] != sub {
			t.Errorf("%s: command %q, want tidemark %s", svc, cmd, sub)
			continue
		}
		for _, a := range cmd[1:] {
			if f, ok := strings.CutPrefix(a, "--"); ok && !flags[sub][strings.SplitN(f, "=", 2)[0]] {
				t.Errorf("%s: tidemark %s has no flag %s", svc, sub, a)
			}
		}
		for _, env := range s.env {
			if f, ok := envFlag(sub, env); !ok || !flags[sub][f] {
				t.Errorf("%s: tidemark %s reads no %s", svc, sub, env)
			}
		}
		hc := s.health
		if svc == "w2" || svc == "w3" {
			hc = services["w1"].health
		}
		if len(hc) != 4 || hc[0] != "CMD" || hc[1] != container.Binary || hc[2] != "healthcheck" {
			t.Errorf("%s: healthcheck %q, want [CMD /tidemark healthcheck URL]", svc, hc)
		}
	}
	b, _ := os.ReadFile(composeFile)
	for _, env := range namedEnv(b) {
		ok := false
		for sub, fl := range flags {
			if f, is := envFlag(sub, env); is && fl[f] {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s names %s, which no tidemark subcommand reads", composeFile, env)
		}
	}
	// The healthcheck subcommand exists in the binary.
	out, _ := exec.Command(tidemark(t), "healthcheck", "--help").CombinedOutput()
	if !strings.Contains(string(out), "Usage: tidemark healthcheck URL") {
		t.Errorf("tidemark healthcheck --help:\n%s", out)
	}
}
