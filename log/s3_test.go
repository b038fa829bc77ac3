package log

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/tidemark/tidemark/internal/tests3"
)

func TestS3LocksKeys(t *testing.T) {
	for _, tc := range []struct {
		prefix, key string
		want        bool
	}{
		{"", "checkpoint", false},
		{"", "tile/0/000", true},
		{"", "tile/1/x001/234", true},
		{"", "tile/0/000.p/17", false},
		{"", "tile/entries/x001/000", true},
		{"", "tile/entries/000.p/3", false},
		{"logs/a", "logs/a/checkpoint", false},
		{"logs/a/", "logs/a/checkpoint", false},
		{"logs/a", "checkpoint", true}, // not this log's checkpoint
		{"logs/a", "logs/a/tile/entries/000", true},
	} {
		c := S3Config{Bucket: "b", Prefix: tc.prefix, Retention: time.Hour}
		if got := c.locks(tc.key); got != tc.want {
			t.Errorf("prefix %q: locks(%q) = %v, want %v", tc.prefix, tc.key, got, tc.want)
		}
	}
}

// s3ForTest starts versitygw and returns a config for its bucket, the
// credentials in the AWS environment variables as in production.
func s3ForTest(t *testing.T, opts tests3.Options, retention time.Duration) (*tests3.Server, S3Config) {
	t.Helper()
	srv := tests3.Start(t, opts)
	srv.SetEnv(t)
	return srv, S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, Prefix: "logs/a", Retention: retention}
}

func putObject(ctx context.Context, c *s3.Client, bucket, key, body string, ifNoneMatch bool) (string, error) {
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)}
	if ifNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	out, err := c.PutObject(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.VersionId), nil
}

func getObject(t *testing.T, ctx context.Context, c *s3.Client, bucket, key, version string) string {
	t.Helper()
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if version != "" {
		in.VersionId = aws.String(version)
	}
	out, err := c.GetObject(ctx, in)
	if err != nil {
		t.Fatalf("get %s version %q: %v", key, version, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func apiErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// A tile written through the configured client is locked: its version
// can be neither deleted nor replaced, whatever the client asks, and
// stays readable; the checkpoint and partial tiles are not locked.
func TestS3ObjectLock(t *testing.T) {
	srv, cfg := s3ForTest(t, tests3.Options{ObjectLock: true}, time.Hour)
	ctx := context.Background()
	tc, err := cfg.tesseraConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tc.Bucket != srv.Bucket || tc.BucketPrefix != "logs/a" || tc.SDKConfig == nil || tc.S3Options == nil {
		t.Fatalf("tesseraConfig = %+v", tc)
	}
	c, err := cfg.s3Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := srv.Bucket
	const tile = "logs/a/tile/0/000"
	start := time.Now()
	locked, err := putObject(ctx, c, b, tile, "tile v1", true)
	if err != nil {
		t.Fatalf("put %s: %v", tile, err)
	}
	if locked == "" {
		t.Fatal("no version ID: the bucket is not versioned")
	}
	ret, err := c.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(b), Key: aws.String(tile)})
	if err != nil {
		t.Fatalf("GetObjectRetention(%s): %v", tile, err)
	}
	if ret.Retention.Mode != types.ObjectLockRetentionModeCompliance {
		t.Errorf("retention mode %q, want COMPLIANCE", ret.Retention.Mode)
	}
	if until := aws.ToTime(ret.Retention.RetainUntilDate); until.Before(start.Add(time.Hour-time.Minute)) || until.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Errorf("retained until %v, want about an hour from %v", until, start)
	}

	// Tessera's own write: refused, as the key exists.
	if _, err := putObject(ctx, c, b, tile, "tile v2", true); apiErrorCode(err) != "PreconditionFailed" {
		t.Errorf("second put with If-None-Match: %v, want PreconditionFailed", err)
	}
	// An overwrite without the condition only adds a version.
	if _, err := putObject(ctx, c, b, tile, "tile v3", false); err != nil {
		t.Errorf("overwrite: %v", err)
	}
	// A delete without a version ID only adds a delete marker.
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(tile)}); err != nil {
		t.Errorf("delete: %v", err)
	}
	// Deleting the locked version itself is refused, even asking to bypass
	// (that is for GOVERNANCE mode only).
	for _, bypass := range []bool{false, true} {
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(tile), VersionId: aws.String(locked), BypassGovernanceRetention: aws.Bool(bypass)})
		if err == nil {
			t.Fatalf("deleting the locked version (bypass %v) succeeded", bypass)
		}
		if code := apiErrorCode(err); code != "AccessDenied" {
			t.Errorf("deleting the locked version (bypass %v): %v, want AccessDenied", bypass, err)
		}
	}
	// Shortening the retention is refused too.
	if _, err := c.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{Bucket: aws.String(b), Key: aws.String(tile), VersionId: aws.String(locked),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: aws.Time(time.Now().Add(time.Minute))}}); err == nil {
		t.Error("shortening the locked version's retention succeeded")
	}
	if got := getObject(t, ctx, c, b, tile, locked); got != "tile v1" {
		t.Errorf("locked version reads %q, want %q", got, "tile v1")
	}

	// The checkpoint is rewritten in place, and its old versions can go.
	const cp = "logs/a/checkpoint"
	v1, err := putObject(ctx, c, b, cp, "checkpoint 1", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := putObject(ctx, c, b, cp, "checkpoint 2", false); err != nil {
		t.Fatal(err)
	}
	if got := getObject(t, ctx, c, b, cp, ""); got != "checkpoint 2" {
		t.Errorf("checkpoint reads %q after overwrite", got)
	}
	if _, err := c.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(b), Key: aws.String(cp)}); err == nil {
		t.Error("the checkpoint has a retention")
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(cp), VersionId: aws.String(v1)}); err != nil {
		t.Errorf("deleting an old checkpoint version: %v", err)
	}

	// Partial tiles are not locked: Tessera's GC deletes them.
	const partial = "logs/a/tile/0/001.p/5"
	pv, err := putObject(ctx, c, b, partial, "partial", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(partial), VersionId: aws.String(pv)}); err != nil {
		t.Errorf("deleting a partial tile's version: %v", err)
	}
}

// The lock asks for a checksum (S3 requires one on a PutObject with Object
// Lock), even when the SDK is told to send checksums only when required.
func TestS3ObjectLockChecksum(t *testing.T) {
	srv, cfg := s3ForTest(t, tests3.Options{ObjectLock: true}, time.Hour)
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
	ctx := context.Background()
	sdk, opts, err := cfg.awsSDKConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sdk.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired {
		t.Fatalf("RequestChecksumCalculation = %v: the environment variable was not read", sdk.RequestChecksumCalculation)
	}
	headers := map[string]string{}
	capture := middleware.FinalizeMiddlewareFunc("capture", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		if req, ok := in.Request.(*smithyhttp.Request); ok {
			for k, v := range req.Header {
				if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-amz-") || lk == "content-md5" {
					headers[req.URL.Path+" "+lk] = v[0]
				}
			}
		}
		return next.HandleFinalize(ctx, in)
	})
	c := s3.NewFromConfig(*sdk, opts, func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error { return s.Finalize.Add(capture, middleware.After) })
	})
	for _, key := range []string{"logs/a/tile/0/000", "logs/a/checkpoint"} {
		if _, err := putObject(ctx, c, srv.Bucket, key, "x", false); err != nil {
			t.Fatal(err)
		}
	}
	tile := "/" + srv.Bucket + "/logs/a/tile/0/000 "
	if headers[tile+"x-amz-object-lock-mode"] != "COMPLIANCE" {
		t.Errorf("tile put has no x-amz-object-lock-mode: COMPLIANCE: %v", headers)
	}
	if headers[tile+"x-amz-checksum-crc32"] == "" && headers[tile+"x-amz-trailer"] != "x-amz-checksum-crc32" {
		t.Errorf("tile put has no CRC32 checksum: %v", headers)
	}
	cp := "/" + srv.Bucket + "/logs/a/checkpoint "
	if _, ok := headers[cp+"x-amz-object-lock-mode"]; ok {
		t.Errorf("checkpoint put has an object lock mode: %v", headers)
	}
}

func TestS3CheckObjectLock(t *testing.T) {
	srv, cfg := s3ForTest(t, tests3.Options{Versioning: true}, time.Hour)
	ctx := context.Background()
	_, err := cfg.tesseraConfig(ctx)
	want := "bucket " + srv.Bucket + " has no Object Lock: create it with object lock enabled, or drop --s3-retention"
	if err == nil || err.Error() != want {
		t.Fatalf("tesseraConfig on a bucket without Object Lock: %v, want %q", err, want)
	}
	// Without retention the bucket need not have Object Lock, and nothing
	// is locked.
	cfg.Retention = 0
	if _, err := cfg.tesseraConfig(ctx); err != nil {
		t.Fatalf("without retention: %v", err)
	}
	c, err := cfg.s3Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := putObject(ctx, c, srv.Bucket, "logs/a/tile/0/000", "x", true); err != nil {
		t.Fatalf("put without retention: %v", err)
	}
	// A bucket with Object Lock passes the check.
	srv.CreateBucket(t, "locked", true)
	if err := checkObjectLock(ctx, c, "locked"); err != nil {
		t.Errorf("checkObjectLock on a bucket with Object Lock: %v", err)
	}
	if err := checkObjectLock(ctx, c, "missing"); err == nil || strings.Contains(err.Error(), "has no Object Lock") {
		t.Errorf("checkObjectLock on a missing bucket: %v, want another error", err)
	}
}

func TestS3ConfigErrors(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_PROFILE", "")
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  S3Config
		want string
	}{
		{S3Config{}, "no S3 bucket"},
		{S3Config{Bucket: "b", Retention: -time.Second}, "negative"},
		{S3Config{Bucket: "b"}, "no AWS region"},
	} {
		if _, _, err := tc.cfg.awsSDKConfig(ctx); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	sdk, _, err := S3Config{Bucket: "b", Endpoint: "http://127.0.0.1:1"}.awsSDKConfig(ctx)
	if err != nil || sdk.Region != s3DefaultRegion {
		t.Errorf("with an endpoint and no region: %v, region %q", err, sdk.Region)
	}
	sdk, _, err = S3Config{Bucket: "b", Region: "eu-west-3"}.awsSDKConfig(ctx)
	if err != nil || sdk.Region != "eu-west-3" {
		t.Errorf("with a region: %v, region %q", err, sdk.Region)
	}
}
