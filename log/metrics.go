package log

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// metrics are the server's Prometheus metrics, in a registry of its own
// that also carries Tessera's OpenTelemetry metrics.
type metrics struct {
	reg         *prometheus.Registry
	appended    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	reusedIDs   *prometheus.CounterVec
	integration prometheus.Histogram

	storageErrors *prometheus.CounterVec
	strayRemoved  prometheus.Counter
}

func newMetrics(s *Server, reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		reg: reg,
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_log_appended_total",
			Help: "Entries appended, by endpoint (events, add).",
		}, []string{"endpoint"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_log_rejected_total",
			Help: "Requests refused, by cause (bad_json, too_large, too_many_events, too_many_values, content_type, key_reused, overloaded, overloaded_bytes, overloaded_writer, overloaded_writer_bytes, disk_full, disk_read_only, unauthenticated, ...).",
		}, []string{"cause"}),
		reusedIDs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_log_reused_ids_total",
			Help: "Events logged as new entries because their id (an \"id\" member, a k8s auditID, an OTLP log.record.uid) was used before for a different event, by endpoint. Someone may be reusing ids to hide events.",
		}, []string{"endpoint"}),
		integration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_log_integration_seconds",
			Help:    "Time from handing a request's entries to Tessera to all of them being sequenced and integrated.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	m.storageErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tidemark_log_storage_errors_total",
		Help: "Requests whose append failed in storage, by kind: full, read_only and io_error (answered 503 with Retry-After), other (answered 500).",
	}, []string{"kind"})
	m.strayRemoved = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tidemark_log_stray_temp_files_removed_total",
		Help: "Temporary files Tessera left behind after failed writes, removed by the log.",
	})
	diskFault := func(kind string) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "tidemark_log_disk_fault",
			Help:        "1 while the data directory's file system is full or read-only (by kind), as probed when scraped.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 {
			if probeDisk(s.cfg.Dir) == kind {
				return 1
			}
			return 0
		})
	}
	for _, kind := range []string{faultFull, faultReadOnly, faultIO, faultOther} {
		m.storageErrors.WithLabelValues(kind)
	}
	for _, e := range []string{"events", "k8s", "otlp"} {
		m.reusedIDs.WithLabelValues(e) // so that rates start from zero
	}
	if err := registerAll(reg, m.appended, m.rejected, m.reusedIDs, m.integration, m.storageErrors, m.strayRemoved, s.gzips.served,
		diskFault(faultFull), diskFault(faultReadOnly),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_idempotency_index_ready",
			Help: "1 once the idempotency index is open and rebuilt; 0 while it cannot be opened (a log restarted on a full disk) and writes are refused with 503.",
		}, func() float64 {
			if s.indexReady.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_inflight_body_bytes",
			Help: "Bytes of request body buffers held by requests being read or answered.",
		}, func() float64 { return float64(s.bodies.current()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_inflight_body_bytes_limit",
			Help: "Bytes of request body buffers beyond which requests get 503 (--max-inflight-bytes).",
		}, func() float64 { return float64(s.bodies.max) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_inflight_events",
			Help: "Events read and not yet answered.",
		}, func() float64 { return float64(s.inflight.current()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_inflight_limit",
			Help: "Events in flight beyond which requests get 503.",
		}, func() float64 { return float64(s.inflight.max) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_tree_size",
			Help: "Size of the integrated tree.",
		}, func() float64 {
			n, err := s.reader.IntegratedSize(s.ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_log_checkpoint_age_seconds",
			Help: "Time since the published checkpoint was last written (published or republished).",
		}, func() float64 {
			if s.backend == nil {
				return -1
			}
			age, err := s.backend.checkpointAge(s.ctx)
			if err != nil {
				return -1
			}
			return age.Seconds()
		}),
	); err != nil {
		return nil, err
	}
	return m, nil
}

func registerAll(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("couldn't register metrics: %w", err)
		}
	}
	return nil
}

// ExportOpenTelemetry routes OpenTelemetry's global meter provider, which
// Tessera reports through, into reg. Call it once per process, before the
// server starts.
func ExportOpenTelemetry(reg *prometheus.Registry) error {
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return fmt.Errorf("couldn't export OpenTelemetry metrics: %w", err)
	}
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)))
	return nil
}
