// Package tests3 runs a real S3-compatible server for the tests of the
// log's S3 storage: versitygw (github.com/versity/versitygw, Apache 2.0)
// with its posix backend, on a loopback port, its data in a test's temp
// directory. `make test` installs the binary into .bin and names that
// directory in TIDEMARK_TOOLS. Only tests import it.
package tests3

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Region is the region the server runs in (versitygw's default).
const Region = "us-east-1"

// Options says how to start the server.
type Options struct {
	// Bucket is the bucket to create; "tidemark" if empty.
	Bucket string
	// ObjectLock creates the bucket with S3 Object Lock enabled. Object
	// Lock needs versioning, so it implies Versioning.
	ObjectLock bool
	// Versioning runs the posix backend with a versioning directory, so
	// that buckets can be versioned (without it versitygw refuses
	// versioning and Object Lock). The bucket itself is not versioned
	// unless ObjectLock is set.
	Versioning bool
}

// A Server is a running versitygw.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	AccessKey string
	Secret    string
	Region    string
	Dir       string // the posix backend's root: one directory per bucket

	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// Missing skips the test, or fails it when CI=true (the CI script sets
// it): in CI an S3 test that did not run must not pass unseen.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, and this test cannot run: %s", why)
	}
	t.Skipf("cannot run: %s", why)
}

// Binary returns the path of the versitygw binary in $TIDEMARK_TOOLS, or
// skips the test (fails it under CI=true) when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	tools := os.Getenv("TIDEMARK_TOOLS")
	if tools == "" {
		Missing(t, "TIDEMARK_TOOLS is not set: run `make test`, which installs versitygw into .bin")
	}
	bin := filepath.Join(tools, "versitygw")
	if _, err := os.Stat(bin); err != nil {
		Missing(t, fmt.Sprintf("no versitygw in TIDEMARK_TOOLS (%v): run `make tools`", err))
	}
	return bin
}

// Start starts versitygw and creates the bucket. The server is stopped
// when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	base := t.TempDir()
	s := &Server{
		Bucket:    opts.Bucket,
		AccessKey: "tidemarktest",
		Secret:    "tidemarktestsecret",
		Region:    Region,
		Dir:       filepath.Join(base, "data"),
	}
	if s.Bucket == "" {
		s.Bucket = "tidemark"
	}
	for _, d := range []string{s.Dir, filepath.Join(base, "versions")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The port is picked by listening on :0 and closing; another process
	// may take it before versitygw does, so try a few times.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.start(t, bin, base, opts.Versioning || opts.ObjectLock); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("versitygw did not start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                     aws.String(s.Bucket),
		ObjectLockEnabledForBucket: aws.Bool(opts.ObjectLock),
	}); err != nil {
		t.Fatalf("creating bucket %q (object lock %v): %v\nversitygw output:\n%s", s.Bucket, opts.ObjectLock, err, s.log.String())
	}
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start(t testing.TB, bin, base string, versioning bool) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--access", s.AccessKey, "--secret", s.Secret, "--region", s.Region,
		"--port", addr, "--quiet", "posix"}
	if versioning {
		args = append(args, "--versioning-dir", filepath.Join(base, "versions"))
	}
	args = append(args, s.Dir)
	cmd := exec.Command(bin, args...)
	// Keep the credentials out of versitygw's environment lookups and the
	// test's: they are on the command line.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=", "ROOT_SECRET_ACCESS_KEY=")
	s.log = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.Endpoint = "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("versitygw exited: %s: %s", cmd.ProcessState, s.log.String())
		default:
		}
		if s.answers() {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("versitygw did not answer on %s within 20s: %s", addr, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.cmd, s.done = cmd, done
	t.Cleanup(s.stop)
	return nil
}

// answers reports whether the server answers HTTP (any status: an
// unsigned request is refused, which is still an answer).
func (s *Server) answers() bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(s.Endpoint + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Log returns what versitygw printed so far.
func (s *Server) Log() string { return s.log.String() }

// Client returns an S3 client for the server, with its root credentials.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.Secret, ""),
	})
}

// SetEnv points the standard AWS environment variables (read by
// config.LoadDefaultConfig) at the server for the rest of the test, and
// keeps any shared config or credentials file of the machine out of it.
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           s.AccessKey,
		"AWS_SECRET_ACCESS_KEY":       s.Secret,
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  s.Region,
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

// CreateBucket creates another bucket on the server.
func (s *Server) CreateBucket(t testing.TB, name string, objectLock bool) {
	t.Helper()
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{
		Bucket:                     aws.String(name),
		ObjectLockEnabledForBucket: aws.Bool(objectLock),
	}); err != nil {
		t.Fatalf("creating bucket %q (object lock %v): %v", name, objectLock, err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 {
		return len(p), nil // enough to say what went wrong
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
