// Package ops serves the operational HTTP endpoints of a ladder process:
// Prometheus /metrics from a private registry, /healthz (alive) and /readyz
// (ready to do its job).
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// NewRegistry returns a private registry with the Go runtime and process
// collectors and ladder_build_info{version}. sarama's own go-metrics are not
// bridged: the forwarder exports what an operator needs as ladder_* metrics.
func NewRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "ladder_build_info",
			Help:        "Always 1; the version label says which build runs.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	return reg
}

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log zerolog.Logger
}

// Listen binds addr (host:port; port 0 picks one) and prepares the handlers.
// ready reports why the process is not ready, or nil.
func Listen(addr string, gatherer prometheus.Gatherer, ready func() error, log zerolog.Logger) (*Server, error) {
	ln, err := Bind(addr)
	if err != nil {
		return nil, err
	}
	return NewServer(ln, gatherer, ready, log), nil
}

// Bind binds addr for a Server, for a caller that must know the address is
// free before it goes on (ladder dev, before its banner).
func Bind(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics and health on %s: %w", addr, err)
	}
	return ln, nil
}

// NewServer prepares the handlers on ln, bound by Bind.
func NewServer(ln net.Listener, gatherer prometheus.Gatherer, ready func() error, log zerolog.Logger) *Server {
	return &Server{ln: ln, srv: &http.Server{Handler: Handler(gatherer, ready), ReadHeaderTimeout: 10 * time.Second}, log: log}
}

// Handler routes the three endpoints.
func Handler(gatherer prometheus.Gatherer, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is done, then shuts down, letting requests in
// progress finish for up to 5 seconds.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info().Str("addr", s.Addr()).Msg("serving /metrics, /healthz and /readyz")
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics and health server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("stopping metrics and health server: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
