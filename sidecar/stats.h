#pragma once

// Counters and gauges in Envoy's names, kept by name for the life of the process (a cluster
// that is removed and comes back keeps counting). The data path only touches atomics; the
// registry's mutex is taken when a config is built and when stats are rendered.

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sidecar/istio_metrics.h"

namespace meshpilot::sidecar {

// A TLS context's handshakes (Envoy's ssl.*), on the listener or cluster that uses it.
struct SslStats {
  std::atomic<uint64_t> handshake{0};
  std::atomic<uint64_t> connection_error{0};
  std::atomic<uint64_t> fail_verify_error{0};    // the peer's chain did not verify
  std::atomic<uint64_t> fail_verify_no_cert{0};  // a required client certificate was absent
  std::atomic<uint64_t> fail_verify_san{0};      // no SAN matched
  std::atomic<uint64_t> no_certificate{0};       // handshakes without a peer certificate
};

struct ClusterStats {
  ClusterStats() = default;
  ClusterStats(const ClusterStats&) = delete;
  ClusterStats& operator=(const ClusterStats&) = delete;
  ~ClusterStats() { delete upstream_rq_code.load(std::memory_order_acquire); }

  std::atomic<uint64_t> upstream_rq_total{0};
  std::array<std::atomic<uint64_t>, 6> upstream_rq_class{};  // [1] 1xx ... [5] 5xx
  // Envoy's upstream_rq_<code>, per status 100..599: made with the first response (4 KiB),
  // so that a cluster nothing answered costs nothing.
  using CodeCounts = std::array<std::atomic<uint64_t>, 500>;
  std::atomic<CodeCounts*> upstream_rq_code{nullptr};
  std::atomic<uint64_t> upstream_rq_retry{0};
  std::atomic<uint64_t> upstream_rq_timeout{0};
  std::atomic<uint64_t> upstream_rq_per_try_timeout{0};
  std::atomic<uint64_t> upstream_cx_total{0};
  SslStats ssl;
  std::atomic<int64_t> upstream_cx_active{0};
  std::atomic<uint64_t> upstream_cx_connect_fail{0};
  std::atomic<uint64_t> upstream_cx_destroy{0};
  std::atomic<uint64_t> upstream_cx_rx_bytes_total{0};
  std::atomic<uint64_t> upstream_cx_tx_bytes_total{0};
  std::atomic<uint64_t> upstream_cx_none_healthy{0};
  std::atomic<int64_t> upstream_rq_active{0};
  std::atomic<int64_t> upstream_rq_retry_active{0};  // retries waiting or in flight
  std::atomic<uint64_t> upstream_rq_pending_total{0};
  std::atomic<int64_t> upstream_rq_pending_active{0};  // across workers: max_pending_requests
  std::atomic<uint64_t> upstream_rq_pending_overflow{0};
  std::atomic<uint64_t> upstream_rq_cancelled{0};  // left the pending queue: the client gave up
  std::atomic<uint64_t> upstream_cx_overflow{0};
  std::atomic<uint64_t> upstream_cx_idle_timeout{0};
  std::atomic<uint64_t> upstream_cx_max_requests{0};
  std::atomic<uint64_t> upstream_cx_max_duration_reached{0};
  std::atomic<uint64_t> upstream_rq_retry_overflow{0};
  std::atomic<uint64_t> outlier_detection_ejections_enforced_total{0};
  std::atomic<int64_t> outlier_detection_ejections_active{0};
  std::atomic<uint64_t> outlier_detection_ejections_detected_success_rate{0};
  std::atomic<uint64_t> outlier_detection_ejections_enforced_success_rate{0};
  std::atomic<uint64_t> outlier_detection_ejections_detected_failure_percentage{0};
  std::atomic<uint64_t> outlier_detection_ejections_enforced_failure_percentage{0};
  std::atomic<uint64_t> outlier_detection_ejections_detected_consecutive_local_origin_failure{0};
  std::atomic<uint64_t> outlier_detection_ejections_enforced_consecutive_local_origin_failure{0};
  std::atomic<uint64_t> outlier_detection_ejections_detected_local_origin_success_rate{0};
  std::atomic<uint64_t> outlier_detection_ejections_enforced_local_origin_success_rate{0};
  std::atomic<uint64_t> outlier_detection_ejections_detected_local_origin_failure_percentage{0};
  std::atomic<uint64_t> outlier_detection_ejections_enforced_local_origin_failure_percentage{0};
  IstioRequestTable istio_requests;
  IstioTcpTable istio_tcp;

  void CountResponse(unsigned status) {
    upstream_rq_total.fetch_add(1, std::memory_order_relaxed);
    if (status < 100 || status >= 600) return;
    upstream_rq_class[status / 100].fetch_add(1, std::memory_order_relaxed);
    CodeCounts* codes = upstream_rq_code.load(std::memory_order_acquire);
    if (codes == nullptr) {
      auto* made = new CodeCounts{};
      if (upstream_rq_code.compare_exchange_strong(codes, made, std::memory_order_acq_rel)) {
        codes = made;
      } else {
        delete made;  // another worker's came first: `codes` is it
      }
    }
    (*codes)[status - 100].fetch_add(1, std::memory_order_relaxed);
  }
};

// An upstream request counted in upstream_rq_active while it lives, if the max_requests
// circuit breaker (across all workers) admitted it; an overflow counts
// upstream_rq_pending_overflow instead.
class ActiveUpstreamRequest {
 public:
  ActiveUpstreamRequest(ClusterStats& stats, uint32_t max_requests) : stats_(stats) {
    admitted_ = stats_.upstream_rq_active.fetch_add(1, std::memory_order_relaxed) <
                static_cast<int64_t>(max_requests);
    if (!admitted_) {
      stats_.upstream_rq_active.fetch_sub(1, std::memory_order_relaxed);
      stats_.upstream_rq_pending_overflow.fetch_add(1, std::memory_order_relaxed);
    }
  }
  ~ActiveUpstreamRequest() {
    if (admitted_) stats_.upstream_rq_active.fetch_sub(1, std::memory_order_relaxed);
  }
  ActiveUpstreamRequest(const ActiveUpstreamRequest&) = delete;
  ActiveUpstreamRequest& operator=(const ActiveUpstreamRequest&) = delete;

  bool admitted() const { return admitted_; }

 private:
  ClusterStats& stats_;
  bool admitted_ = false;
};

struct ListenerStats {
  std::atomic<uint64_t> downstream_cx_total{0};
  std::atomic<int64_t> downstream_cx_active{0};
  std::atomic<uint64_t> downstream_rq_total{0};
  std::array<std::atomic<uint64_t>, 6> downstream_rq_class{};
  std::atomic<uint64_t> no_route{0};
  std::atomic<uint64_t> rbac_allowed{0};  // connections and requests the RBAC filters passed
  std::atomic<uint64_t> rbac_denied{0};
  std::atomic<uint64_t> bind_errors{0};
  std::atomic<uint64_t> no_filter_chain_match{0};
  // The tls_inspector's (Envoy's listener.NAME.tls_inspector.*).
  std::atomic<uint64_t> tls_found{0};
  std::atomic<uint64_t> tls_not_found{0};
  std::atomic<uint64_t> sni_found{0};
  std::atomic<uint64_t> client_hello_too_large{0};
  // The http_inspector's (listener.NAME.http_inspector.*).
  std::atomic<uint64_t> http10_found{0};
  std::atomic<uint64_t> http11_found{0};
  std::atomic<uint64_t> http2_found{0};
  std::atomic<uint64_t> http_not_found{0};
  SslStats ssl;
  // Istio's metrics of requests that got no cluster (no route, an unknown cluster): the
  // store's one table, shared by all listeners.
  IstioRequestTable* istio_unrouted = nullptr;
};

// The HTTP connection manager's limits (Envoy's http.STAT_PREFIX.*), shared by the connection
// managers with the same stat_prefix.
struct HttpConnectionManagerStats {
  std::atomic<uint64_t> downstream_cx_idle_timeout{0};
  std::atomic<uint64_t> downstream_cx_max_duration_reached{0};
  std::atomic<uint64_t> downstream_cx_max_requests_reached{0};  // each request at or past it
  std::atomic<uint64_t> downstream_rq_max_duration_reached{0};
};

class StatsStore {
 public:
  std::shared_ptr<ClusterStats> Cluster(const std::string& name);
  std::shared_ptr<ListenerStats> Listener(const std::string& name);
  std::shared_ptr<HttpConnectionManagerStats> Http(const std::string& stat_prefix);

  // Envoy's /stats text (`cluster.NAME.upstream_rq_total: 3`), sorted.
  std::string RenderText() const;
  // Prometheus text exposition in Envoy's names (`envoy_cluster_upstream_rq_total{...}`) and
  // Istio's standard metrics, labelled with `peers`' own workload and the peers it met.
  std::string RenderPrometheus() const;

  void set_peers(const PeerDirectory* peers) { peers_ = peers; }

  std::atomic<uint64_t> xds_ack{0};
  std::atomic<uint64_t> xds_nack{0};
  std::atomic<uint64_t> xds_connect{0};

 private:
  std::vector<IstioScrape> IstioScrapes() const;  // under mu_

  const PeerDirectory* peers_ = &Peers();
  mutable std::mutex mu_;
  IstioRequestTable unrouted_;
  std::map<std::string, std::shared_ptr<ClusterStats>> clusters_;
  std::map<std::string, std::shared_ptr<ListenerStats>> listeners_;
  std::map<std::string, std::shared_ptr<HttpConnectionManagerStats>> http_;
};

}  // namespace meshpilot::sidecar
