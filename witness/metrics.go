package witness

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the witness's Prometheus metrics.
type metrics struct {
	requests        *prometheus.CounterVec
	cosigned        prometheus.Counter
	repeats         prometheus.Counter
	evidence        *prometheus.CounterVec
	evidenceDropped prometheus.Counter
	batchSize       prometheus.Histogram
	commitSeconds   prometheus.Histogram
	polls           *prometheus.CounterVec
	storageErrors   *prometheus.CounterVec
}

func newMetrics(w *Witness, reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_witness_add_checkpoint_requests_total",
			Help: "add-checkpoint requests, by HTTP status.",
		}, []string{"status"}),
		cosigned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_witness_cosigned_total",
			Help: "Checkpoints cosigned that advanced a log's state (durably stored first).",
		}),
		repeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_witness_repeats_total",
			Help: "Requests for the checkpoint already cosigned, answered from memory.",
		}),
		evidence: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_witness_evidence_total",
			Help: "Evidence of log misbehaviour seen, by kind (split-view, inconsistent-proof), including repeats and items over the cap.",
		}, []string{"kind"}),
		evidenceDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_witness_evidence_dropped_total",
			Help: "Evidence not stored because its log already has the most items kept per log.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_witness_commit_batch_size",
			Help:    "Writes per state transaction (group commit: one fsync each).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_witness_commit_seconds",
			Help:    "Time to write and commit (fsync) one state transaction.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_witness_polls_total",
			Help: "Polls of followed logs, by result (cosigned, unchanged, error).",
		}, []string{"result"}),
		storageErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_witness_storage_errors_total",
			Help: "add-checkpoint requests refused (503) because the state could not be written, by kind (full, read_only).",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.cosigned, m.repeats, m.evidence, m.evidenceDropped, m.batchSize, m.commitSeconds, m.polls, m.storageErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_witness_logs",
			Help: "Logs the witness accepts (from --logs and --follow).",
		}, func() float64 { return float64(len(w.logs.Load().byOrigin)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "tidemark_witness_sqlite_settings",
			Help:        "Always 1; the labels are the state database's settings, read back at open, that durability relies on.",
			ConstLabels: prometheus.Labels{"journal_mode": w.state.journalMode, "synchronous": fmt.Sprint(w.state.synchronous)},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tidemark_witness_evidence_items",
			Help: "Items of evidence held.",
		}, func() float64 { return float64(len(w.evidence.all())) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("couldn't register metrics: %w", err)
		}
	}
	return m, nil
}
