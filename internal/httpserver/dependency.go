package httpserver

import "github.com/prometheus/client_golang/prometheus"

// RegisterDependencyUp registers orderflow_<service>_dependency_up{dependency}: 1 while up
// reports the dependency reachable, 0 while it is away. Every service that rides out its
// dependencies' outages shows them the same way (docs/*.md, rule OrderflowDependencyAway).
func RegisterDependencyUp(reg prometheus.Registerer, service, help string, up func(dependency string) bool, deps ...string) {
	for _, dep := range deps {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "orderflow_" + service + "_dependency_up",
			Help:        help,
			ConstLabels: prometheus.Labels{"dependency": dep},
		}, func() float64 {
			if up(dep) {
				return 1
			}
			return 0
		}))
	}
}
