package auditor

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the auditor's Prometheus metrics (tidemark_auditor_*).
type Metrics struct {
	checks      *prometheus.CounterVec
	findings    *prometheus.CounterVec
	alerts      *prometheus.CounterVec
	treeSize    prometheus.Gauge
	accepted    prometheus.Gauge
	age         prometheus.Gauge
	fullEntries prometheus.Counter
	fullNext    prometheus.Gauge
	contents    *prometheus.CounterVec
}

// NewMetrics registers the auditor's metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_auditor_checks_total",
			Help: "Checks run, by result: verified, misbehaviour, unchecked."}, []string{"result"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_auditor_findings_total",
			Help: "Findings, by kind."}, []string{"kind"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_auditor_alerts_total",
			Help: "Webhook alerts, by result: sent, failed (after every retry), dropped (queue full)."}, []string{"result"}),
		treeSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_auditor_log_tree_size",
			Help: "Tree size of the log's latest checkpoint."}),
		accepted: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_auditor_accepted_tree_size",
			Help: "Tree size of the last checkpoint the auditor verified and accepted."}),
		age: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_auditor_checkpoint_age_seconds",
			Help: "Age of the newest quorum of cosignatures on the log's checkpoint."}),
		fullEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "tidemark_auditor_full_entries_total",
			Help: "Leaves checked by full checks."}),
		fullNext: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_auditor_full_checked_size",
			Help: "Number of leaves the full check has verified, from index 0."}),
		contents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_auditor_full_contents_total",
			Help: "Commitment leaves checked by full checks, by result: opened (content served and opens the commitment), erased (no content, covered by an erasure leaf), unchecked (--skip-payloads). Contents that do not open or are missing without an erasure are findings."}, []string{"result"}),
	}
	reg.MustRegister(m.checks, m.findings, m.alerts, m.treeSize, m.accepted, m.age, m.fullEntries, m.fullNext, m.contents)
	return m
}

// countContents adds what a full check found among commitment leaves
// between the counts it started from and those it ended with.
func (m *Metrics) countContents(before, after Counts) {
	m.contents.WithLabelValues("opened").Add(float64(after.Opened - before.Opened))
	m.contents.WithLabelValues("erased").Add(float64(after.Erased - before.Erased))
	m.contents.WithLabelValues("unchecked").Add(float64(after.Unchecked - before.Unchecked))
}
