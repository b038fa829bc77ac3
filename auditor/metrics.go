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
	}
	reg.MustRegister(m.checks, m.findings, m.alerts, m.treeSize, m.accepted, m.age, m.fullEntries, m.fullNext)
	return m
}
