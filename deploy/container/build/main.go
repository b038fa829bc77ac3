// Command build makes Tidemark's container image without a Docker daemon:
// it builds the static binary (CGO_ENABLED=0) and writes the image as a
// tarball for `podman load -i`, `docker load -i` or skopeo.
//
//	go run ./deploy/container/build -out tidemark-image.tar -version v0.12.0
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/tidemark/tidemark/deploy/container"
)

func main() {
	out := flag.String("out", "tidemark-image.tar", "the image tarball to write")
	version := flag.String("version", "", "the version the binary and the image's label carry")
	tag := flag.String("tag", "tidemark:latest", "the image's name in the tarball")
	ca := flag.String("ca", "/etc/ssl/certs/ca-certificates.crt", "the CA certificates to copy in")
	flag.Parse()
	if err := run(*out, *version, *tag, *ca); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
}

func run(out, version, tag, ca string) error {
	if runtime.GOARCH != "amd64" {
		// The config says amd64; cross-building is GOARCH=amd64 below.
		fmt.Fprintln(os.Stderr, "build: making a linux/amd64 image")
	}
	dir, err := os.MkdirTemp("", "tidemark-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "tidemark")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "github.com/tidemark/tidemark/cmd/tidemark")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	img, err := container.Image(bin, ca, version)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s (%s, %s)\n", out, tag, d)
	return nil
}
