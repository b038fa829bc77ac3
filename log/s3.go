package log

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	tesseraaws "github.com/transparency-dev/tessera/storage/aws"
)

// S3 storage: the log's tiles, entry bundles and checkpoint in an S3 (or
// S3-compatible) bucket, through Tessera's AWS driver (storage/aws), which
// sequences in MySQL. This file builds the driver's S3 configuration; the
// DSN and the rest are the caller's.
//
// Credentials come from the standard places, as config.LoadDefaultConfig
// reads them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a shared
// config/credentials file, AWS_PROFILE, an instance role...), and the region
// from S3Config.Region, else AWS_REGION. An Endpoint means a non-AWS server:
// path-style addressing, and us-east-1 when no region is given.
//
// Write-once retention (S3Config.Retention > 0): every PutObject is given
// S3 Object Lock in COMPLIANCE mode until now+Retention, except the
// checkpoint (rewritten at every publication) and partial tiles and
// bundles (keys with a ".p/" segment). A locked version cannot be deleted
// or have its retention shortened by anyone, root included, until the date
// passes; a new write to the same key only adds a version (Tessera writes
// tiles and bundles with If-None-Match: *, so it never does). The bucket
// must have been created with Object Lock enabled (which makes it
// versioned): checkObjectLock refuses to start otherwise.
//
// Why partial tiles and bundles are not locked: Tessera's AWS driver
// garbage-collects the partial versions of a tile or bundle once the full
// one is published (garbageCollectorJob, every minute by default), by
// DeleteObjects without version IDs. On a versioned bucket that only adds
// delete markers: the partials disappear from reads, as without Object
// Lock, and GC never fails, but their bytes stay as noncurrent versions.
// Locked, those versions could not be removed before the retention ends,
// and a log that integrates a few entries at a time writes up to 255
// partials of growing size per bundle (about 128 times the full bundle's
// bytes). Unlocked, a lifecycle rule (NoncurrentVersionExpiration) can
// remove them, and the checkpoint's old versions too. The price: the
// entries and hashes of the log's right edge are protected only once their
// tile or bundle is full (256 entries); until then a partial can be
// deleted by someone with the right to.
//
// S3 requires Content-MD5 or a flexible checksum on a PutObject with Object
// Lock parameters: the middleware asks for CRC32 when no checksum algorithm
// is set (SDK versions since early 2025 send CRC32 by default anyway, but not
// with AWS_REQUEST_CHECKSUM_CALCULATION=when_required).

// S3Config says where the log's objects go.
type S3Config struct {
	// Bucket is the bucket's name.
	Bucket string
	// Endpoint is the URL of a non-AWS S3-compatible server (path-style
	// addressing); empty for AWS S3.
	Endpoint string
	// Prefix is prepended to every object's key ("<prefix>/checkpoint"),
	// to keep several logs in one bucket.
	Prefix string
	// Retention > 0 locks tiles and bundles (see above) for this long
	// after they are written; the bucket must have Object Lock enabled.
	Retention time.Duration
	// Region overrides AWS_REGION and the shared config.
	Region string
}

// s3DefaultRegion is the region used with an Endpoint when none is set.
const s3DefaultRegion = "us-east-1"

// checkpointKey is the key Tessera writes the checkpoint to, under the
// prefix, as its driver does (filepath.Join).
func (c S3Config) checkpointKey() string {
	if c.Prefix == "" {
		return "checkpoint"
	}
	return path.Join(c.Prefix, "checkpoint")
}

// locks reports whether an object written under key gets Object Lock:
// everything but the checkpoint and partial tiles and bundles.
func (c S3Config) locks(key string) bool {
	return key != c.checkpointKey() && !strings.Contains(key, ".p/")
}

// awsSDKConfig loads the SDK configuration (credentials, region) and
// returns it with the options Tessera's driver applies to its S3 client:
// the endpoint, and the Object Lock middleware when Retention > 0.
func (c S3Config) awsSDKConfig(ctx context.Context) (*aws.Config, func(*s3.Options), error) {
	if c.Bucket == "" {
		return nil, nil, errors.New("no S3 bucket given")
	}
	if c.Retention < 0 {
		return nil, nil, fmt.Errorf("S3 retention %v is negative", c.Retention)
	}
	var loadOpts []func(*config.LoadOptions) error
	if c.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(c.Region))
	}
	sdk, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, nil, fmt.Errorf("couldn't load the AWS configuration: %w", err)
	}
	if sdk.Region == "" {
		if c.Endpoint == "" {
			return nil, nil, errors.New("no AWS region: set AWS_REGION (or the S3 region option)")
		}
		sdk.Region = s3DefaultRegion
	}
	opts := func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
			o.UsePathStyle = true
		}
		if c.Retention > 0 {
			o.APIOptions = append(o.APIOptions, c.objectLockMiddleware(time.Now))
		}
		if c.Prefix != "" {
			o.APIOptions = append(o.APIOptions, c.doublePrefixMiddleware())
		}
	}
	return &sdk, opts, nil
}

// doublePrefixMiddleware works around a defect of Tessera v1.0.4's AWS
// driver with a bucket prefix: when a conditional write (If-None-Match: *)
// of a tile or bundle finds the object there already, the driver reads it
// to check it holds the same bytes, but with the prefix joined to the key
// twice ("<prefix>/<prefix>/tile/..."); the read fails, and so does the
// write, though it is an identical rewrite, every time it is retried. An
// integration retried after a tile was written, or a migration resumed
// over bundles it copied before, then never gets past it. No key of the
// log begins with the prefix twice (they are "checkpoint" and "tile/..."
// under it), so a GetObject for one is sent for the key meant.
func (c S3Config) doublePrefixMiddleware() func(*middleware.Stack) error {
	p := path.Clean(c.Prefix) + "/"
	mw := middleware.InitializeMiddlewareFunc("TidemarkDoublePrefix", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if get, ok := in.Parameters.(*s3.GetObjectInput); ok {
			if k := aws.ToString(get.Key); strings.HasPrefix(k, p+p) {
				get.Key = aws.String(k[len(p):])
			}
		}
		return next.HandleInitialize(ctx, in)
	})
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(mw, middleware.Before)
	}
}

// tesseraConfig returns the configuration of Tessera's AWS driver for c:
// SDKConfig, S3Options, Bucket and BucketPrefix. The caller sets DSN (and
// HTTPClient, MaxOpenConns...). SDKConfig is never nil: with a nil one the
// driver loads its own and drops S3Options. With Retention > 0 it first
// checks the bucket (checkObjectLock), which takes a request.
func (c S3Config) tesseraConfig(ctx context.Context) (tesseraaws.Config, error) {
	sdk, opts, err := c.awsSDKConfig(ctx)
	if err != nil {
		return tesseraaws.Config{}, err
	}
	if c.Retention > 0 {
		if err := checkObjectLock(ctx, s3.NewFromConfig(*sdk, opts), c.Bucket); err != nil {
			return tesseraaws.Config{}, err
		}
	}
	return tesseraaws.Config{
		SDKConfig:    sdk,
		S3Options:    opts,
		Bucket:       c.Bucket,
		BucketPrefix: c.Prefix,
	}, nil
}

// s3Client returns a client configured as the driver's is.
func (c S3Config) s3Client(ctx context.Context) (*s3.Client, error) {
	sdk, opts, err := c.awsSDKConfig(ctx)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(*sdk, opts), nil
}

// objectLockMiddleware sets Object Lock (COMPLIANCE, until now()+Retention)
// and a CRC32 checksum on every PutObject whose key c.locks.
func (c S3Config) objectLockMiddleware(now func() time.Time) func(*middleware.Stack) error {
	mw := middleware.InitializeMiddlewareFunc("TidemarkObjectLock", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		if put, ok := in.Parameters.(*s3.PutObjectInput); ok && c.locks(aws.ToString(put.Key)) {
			put.ObjectLockMode = types.ObjectLockModeCompliance
			put.ObjectLockRetainUntilDate = aws.Time(now().Add(c.Retention))
			if put.ChecksumAlgorithm == "" {
				put.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
			}
		}
		return next.HandleInitialize(ctx, in)
	})
	return func(stack *middleware.Stack) error {
		// Before the SDK's checksum middleware reads ChecksumAlgorithm.
		return stack.Initialize.Add(mw, middleware.Before)
	}
}

// checkObjectLock fails unless the bucket has Object Lock enabled: without
// it every locked PutObject would fail, or (on a server that ignores the
// headers) nothing would be locked.
func checkObjectLock(ctx context.Context, client *s3.Client, bucket string) error {
	out, err := client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(bucket)})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ObjectLockConfigurationNotFoundError" {
		return noObjectLockError(bucket)
	}
	if err != nil {
		return fmt.Errorf("couldn't read the Object Lock configuration of bucket %s: %w", bucket, err)
	}
	if out.ObjectLockConfiguration == nil || out.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		return noObjectLockError(bucket)
	}
	return nil
}

func noObjectLockError(bucket string) error {
	return fmt.Errorf("bucket %s has no Object Lock: create it with object lock enabled, or drop --s3-retention", bucket)
}
