// Package container assembles Tidemark's container image without a Docker
// daemon: the static binary, the CA certificates and an /etc/passwd line for
// the non-root user, in one layer on an empty image. Its configuration is
// the one deploy/container/Dockerfile gives (deploy/container_test.go checks
// that they agree); `make image` writes it as a tarball that `podman load`,
// `docker load` or `skopeo copy docker-archive:...` take.
package container

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's configuration; the Dockerfile's final stage says the same.
const (
	UID        = 65532
	User       = "65532:65532"
	Binary     = "/tidemark"
	StateDir   = "/var/lib/tidemark"
	CACertFile = "/etc/ssl/certs/ca-certificates.crt"
)

var (
	Entrypoint = []string{Binary}
	// Ports: the log's API (8080), the witness's (8081), audit --metrics-listen (9464).
	Ports = []string{"8080/tcp", "8081/tcp", "9464/tcp"}
)

// Image returns the image holding the static binary at binary and the CA
// certificates at caFile, labelled with version.
func Image(binary, caFile, version string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A fixed time: the same binary makes the same layer.
	mtime := time.Unix(0, 0)
	dir := func(name string, uid int) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, Uid: uid, Gid: uid, ModTime: mtime})
	}
	file := func(name string, mode int64, b []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: mtime})
		tw.Write(b)
	}
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "var", "var/lib"} {
		dir(d, 0)
	}
	dir(StateDir[1:], UID)
	file(CACertFile[1:], 0o644, ca)
	file("etc/passwd", 0o644, fmt.Appendf(nil, "nonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", UID, UID, StateDir))
	file("etc/group", 0o644, fmt.Appendf(nil, "nonroot:x:%d:\n", UID))
	file(Binary[1:], 0o755, bin)
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: mtime}
	cf.Config.User = User
	cf.Config.Entrypoint = Entrypoint
	cf.Config.WorkingDir = StateDir
	cf.Config.Env = []string{"SSL_CERT_FILE=" + CACertFile}
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range Ports {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	cf.Config.Volumes = map[string]struct{}{StateDir: {}}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "tidemark",
		"org.opencontainers.image.description": "Tidemark: a transparency log for audit events, its witness and auditor",
		"org.opencontainers.image.source":      "https://github.com/tidemark/tidemark",
		"org.opencontainers.image.version":     version,
	}
	return mutate.ConfigFile(img, cf)
}
