#include "sidecar/stats.h"

#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "sidecar/heap.h"

namespace meshpilot::sidecar {
namespace {

std::string Label(const std::string& value) {
  return absl::StrReplaceAll(value, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

// Envoy's Prometheus name of a stat: dots become underscores.
std::string PrometheusName(const char* prefix, const std::string& name) {
  return absl::StrCat(prefix, absl::StrReplaceAll(name, {{".", "_"}}));
}

struct Metric {
  std::string name;  // without the cluster. / listener. prefix
  bool counter;
  int64_t value;
};

void AppendSslMetrics(const SslStats& s, std::vector<Metric>& metrics) {
  auto v = [](const auto& a) { return static_cast<int64_t>(a.load(std::memory_order_relaxed)); };
  metrics.insert(metrics.end(), {{"ssl.handshake", true, v(s.handshake)},
                                 {"ssl.connection_error", true, v(s.connection_error)},
                                 {"ssl.fail_verify_error", true, v(s.fail_verify_error)},
                                 {"ssl.fail_verify_no_cert", true, v(s.fail_verify_no_cert)},
                                 {"ssl.fail_verify_san", true, v(s.fail_verify_san)},
                                 {"ssl.no_certificate", true, v(s.no_certificate)}});
}

std::vector<Metric> ClusterMetrics(const ClusterStats& s) {
  auto v = [](const auto& a) { return static_cast<int64_t>(a.load(std::memory_order_relaxed)); };
  std::vector<Metric> metrics{
      {"upstream_rq_total", true, v(s.upstream_rq_total)},
      {"upstream_rq_retry", true, v(s.upstream_rq_retry)},
      {"upstream_rq_timeout", true, v(s.upstream_rq_timeout)},
      {"upstream_rq_per_try_timeout", true, v(s.upstream_rq_per_try_timeout)},
      {"upstream_cx_total", true, v(s.upstream_cx_total)},
      {"upstream_cx_active", false, v(s.upstream_cx_active)},
      {"upstream_cx_connect_fail", true, v(s.upstream_cx_connect_fail)},
      {"upstream_cx_destroy", true, v(s.upstream_cx_destroy)},
      {"upstream_cx_rx_bytes_total", true, v(s.upstream_cx_rx_bytes_total)},
      {"upstream_cx_tx_bytes_total", true, v(s.upstream_cx_tx_bytes_total)},
      {"upstream_cx_none_healthy", true, v(s.upstream_cx_none_healthy)},
      {"upstream_rq_active", false, v(s.upstream_rq_active)},
      {"upstream_rq_pending_total", true, v(s.upstream_rq_pending_total)},
      {"upstream_rq_pending_active", false, v(s.upstream_rq_pending_active)},
      {"upstream_rq_pending_overflow", true, v(s.upstream_rq_pending_overflow)},
      {"upstream_rq_cancelled", true, v(s.upstream_rq_cancelled)},
      {"upstream_cx_overflow", true, v(s.upstream_cx_overflow)},
      {"upstream_cx_idle_timeout", true, v(s.upstream_cx_idle_timeout)},
      {"upstream_cx_max_requests", true, v(s.upstream_cx_max_requests)},
      {"upstream_cx_max_duration_reached", true, v(s.upstream_cx_max_duration_reached)},
      {"upstream_rq_retry_overflow", true, v(s.upstream_rq_retry_overflow)},
      {"outlier_detection.ejections_enforced_total", true,
       v(s.outlier_detection_ejections_enforced_total)},
      {"outlier_detection.ejections_active", false, v(s.outlier_detection_ejections_active)},
      {"outlier_detection.ejections_detected_success_rate", true,
       v(s.outlier_detection_ejections_detected_success_rate)},
      {"outlier_detection.ejections_enforced_success_rate", true,
       v(s.outlier_detection_ejections_enforced_success_rate)},
      {"outlier_detection.ejections_detected_failure_percentage", true,
       v(s.outlier_detection_ejections_detected_failure_percentage)},
      {"outlier_detection.ejections_enforced_failure_percentage", true,
       v(s.outlier_detection_ejections_enforced_failure_percentage)},
      {"outlier_detection.ejections_detected_consecutive_local_origin_failure", true,
       v(s.outlier_detection_ejections_detected_consecutive_local_origin_failure)},
      {"outlier_detection.ejections_enforced_consecutive_local_origin_failure", true,
       v(s.outlier_detection_ejections_enforced_consecutive_local_origin_failure)},
      {"outlier_detection.ejections_detected_local_origin_success_rate", true,
       v(s.outlier_detection_ejections_detected_local_origin_success_rate)},
      {"outlier_detection.ejections_enforced_local_origin_success_rate", true,
       v(s.outlier_detection_ejections_enforced_local_origin_success_rate)},
      {"outlier_detection.ejections_detected_local_origin_failure_percentage", true,
       v(s.outlier_detection_ejections_detected_local_origin_failure_percentage)},
      {"outlier_detection.ejections_enforced_local_origin_failure_percentage", true,
       v(s.outlier_detection_ejections_enforced_local_origin_failure_percentage)},
      {"istio_requests_untracked", true, static_cast<int64_t>(s.istio_requests.untracked())},
  };
  AppendSslMetrics(s.ssl, metrics);
  return metrics;
}

// The process's own (Envoy's server.*): the heap, when the allocator reports it.
std::vector<Metric> ServerMetrics() {
  const std::optional<HeapStats> heap = ReadHeapStats();
  if (!heap) return {};
  return {{"memory_allocated", false, static_cast<int64_t>(heap->allocated)},
          {"memory_heap_size", false, static_cast<int64_t>(heap->heap_size)},
          {"memory_physical_size", false, static_cast<int64_t>(heap->physical_size)}};
}

std::vector<Metric> ListenerMetrics(const ListenerStats& s) {
  auto v = [](const auto& a) { return static_cast<int64_t>(a.load(std::memory_order_relaxed)); };
  std::vector<Metric> metrics{
      {"downstream_cx_total", true, v(s.downstream_cx_total)},
      {"downstream_cx_active", false, v(s.downstream_cx_active)},
      {"downstream_rq_total", true, v(s.downstream_rq_total)},
      {"no_route", true, v(s.no_route)},
      {"rbac_allowed", true, v(s.rbac_allowed)},
      {"rbac_denied", true, v(s.rbac_denied)},
      {"bind_errors", true, v(s.bind_errors)},
      {"no_filter_chain_match", true, v(s.no_filter_chain_match)},
      {"tls_inspector.tls_found", true, v(s.tls_found)},
      {"tls_inspector.tls_not_found", true, v(s.tls_not_found)},
      {"tls_inspector.sni_found", true, v(s.sni_found)},
      {"tls_inspector.client_hello_too_large", true, v(s.client_hello_too_large)},
      {"http_inspector.http10_found", true, v(s.http10_found)},
      {"http_inspector.http11_found", true, v(s.http11_found)},
      {"http_inspector.http2_found", true, v(s.http2_found)},
      {"http_inspector.http_not_found", true, v(s.http_not_found)},
  };
  AppendSslMetrics(s.ssl, metrics);
  return metrics;
}

std::vector<Metric> HttpMetrics(const HttpConnectionManagerStats& s) {
  auto v = [](const auto& a) { return static_cast<int64_t>(a.load(std::memory_order_relaxed)); };
  return {
      {"downstream_cx_idle_timeout", true, v(s.downstream_cx_idle_timeout)},
      {"downstream_cx_max_duration_reached", true, v(s.downstream_cx_max_duration_reached)},
      {"downstream_cx_max_requests_reached", true, v(s.downstream_cx_max_requests_reached)},
      {"downstream_rq_max_duration_reached", true, v(s.downstream_rq_max_duration_reached)},
  };
}

// A Prometheus family per metric of the stats in `tree`, a sample per entry, labelled `label`
// with its name.
template <class Stats>
void AppendFamilies(const std::map<std::string, std::shared_ptr<Stats>>& tree, const char* prefix,
                    const char* label, std::vector<Metric> (*metrics_of)(const Stats&),
                    std::string& out) {
  if (tree.empty()) return;
  const std::vector<Metric> names = metrics_of(*tree.begin()->second);
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string metric = PrometheusName(prefix, names[i].name);
    absl::StrAppend(&out, "# TYPE ", metric, names[i].counter ? " counter\n" : " gauge\n");
    for (const auto& [name, stats] : tree) {
      absl::StrAppend(&out, metric, "{", label, "=\"", Label(name), "\"} ",
                      metrics_of(*stats)[i].value, "\n");
    }
  }
}

}  // namespace

std::shared_ptr<ClusterStats> StatsStore::Cluster(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& stats = clusters_[name];
  if (!stats) stats = std::make_shared<ClusterStats>();
  return stats;
}

std::shared_ptr<ListenerStats> StatsStore::Listener(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& stats = listeners_[name];
  if (!stats) {
    stats = std::make_shared<ListenerStats>();
    stats->istio_unrouted = &unrouted_;
  }
  return stats;
}

std::shared_ptr<HttpConnectionManagerStats> StatsStore::Http(const std::string& stat_prefix) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& stats = http_[stat_prefix];
  if (!stats) stats = std::make_shared<HttpConnectionManagerStats>();
  return stats;
}

std::vector<IstioScrape> StatsStore::IstioScrapes() const {
  std::vector<IstioScrape> scrapes{{"", &unrouted_, nullptr}};
  for (const auto& [name, stats] : clusters_) {
    scrapes.push_back({name, &stats->istio_requests, &stats->istio_tcp});
  }
  return scrapes;
}

namespace {

// The status codes a cluster has seen, with their counts (Envoy makes upstream_rq_<code> with
// its first response).
void ForEachCode(const ClusterStats& stats,
                 absl::FunctionRef<void(unsigned code, uint64_t count)> visit) {
  const ClusterStats::CodeCounts* codes = stats.upstream_rq_code.load(std::memory_order_acquire);
  if (codes == nullptr) return;
  for (unsigned i = 0; i < codes->size(); ++i) {
    const uint64_t n = (*codes)[i].load(std::memory_order_relaxed);
    if (n != 0) visit(100 + i, n);
  }
}

}  // namespace

std::string StatsStore::RenderText() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, stats] : clusters_) {
    for (const Metric& m : ClusterMetrics(*stats)) {
      absl::StrAppend(&out, "cluster.", name, ".", m.name, ": ", m.value, "\n");
    }
    for (int c = 1; c <= 5; ++c) {
      absl::StrAppend(&out, "cluster.", name, ".upstream_rq_", c, "xx: ",
                      stats->upstream_rq_class[c].load(std::memory_order_relaxed), "\n");
    }
    ForEachCode(*stats, [&](unsigned code, uint64_t n) {
      absl::StrAppend(&out, "cluster.", name, ".upstream_rq_", code, ": ", n, "\n");
    });
  }
  for (const auto& [name, stats] : listeners_) {
    for (const Metric& m : ListenerMetrics(*stats)) {
      absl::StrAppend(&out, "listener.", name, ".", m.name, ": ", m.value, "\n");
    }
    for (int c = 1; c <= 5; ++c) {
      absl::StrAppend(&out, "listener.", name, ".downstream_rq_", c, "xx: ",
                      stats->downstream_rq_class[c].load(std::memory_order_relaxed), "\n");
    }
  }
  for (const auto& [prefix, stats] : http_) {
    for (const Metric& m : HttpMetrics(*stats)) {
      absl::StrAppend(&out, "http.", prefix, ".", m.name, ": ", m.value, "\n");
    }
  }
  RenderIstioText(IstioScrapes(), peers_->local(), *peers_, out);
  absl::StrAppend(&out, "control_plane.xds_ack: ", xds_ack.load(), "\n");
  absl::StrAppend(&out, "control_plane.xds_nack: ", xds_nack.load(), "\n");
  absl::StrAppend(&out, "control_plane.connected_state_changes: ", xds_connect.load(), "\n");
  for (const Metric& m : ServerMetrics()) absl::StrAppend(&out, "server.", m.name, ": ", m.value, "\n");
  return out;
}

std::string StatsStore::RenderPrometheus() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto family = [&out](const std::string& metric, bool counter) {
    absl::StrAppend(&out, "# TYPE ", metric, counter ? " counter\n" : " gauge\n");
  };
  if (!clusters_.empty()) {
    AppendFamilies(clusters_, "envoy_cluster_", "envoy_cluster_name", ClusterMetrics, out);
    // Envoy's tag extractor turns cluster.NAME.upstream_rq_2xx into upstream_rq_xx with
    // envoy_response_code_class="2".
    family("envoy_cluster_upstream_rq_xx", true);
    for (const auto& [name, stats] : clusters_) {
      for (int c = 1; c <= 5; ++c) {
        absl::StrAppend(&out, "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"", c,
                        "\",envoy_cluster_name=\"", Label(name), "\"} ",
                        stats->upstream_rq_class[c].load(std::memory_order_relaxed), "\n");
      }
    }
    // ... and cluster.NAME.upstream_rq_200 into upstream_rq with envoy_response_code="200".
    family("envoy_cluster_upstream_rq", true);
    for (const auto& [name, stats] : clusters_) {
      ForEachCode(*stats, [&](unsigned code, uint64_t n) {
        absl::StrAppend(&out, "envoy_cluster_upstream_rq{envoy_response_code=\"", code,
                        "\",envoy_cluster_name=\"", Label(name), "\"} ", n, "\n");
      });
    }
  }
  RenderIstioPrometheus(IstioScrapes(), peers_->local(), *peers_, out);
  AppendFamilies(listeners_, "envoy_listener_", "envoy_listener_address", ListenerMetrics, out);
  AppendFamilies(http_, "envoy_http_", "envoy_http_conn_manager_prefix", HttpMetrics, out);
  family("envoy_control_plane_xds_ack", true);
  absl::StrAppend(&out, "envoy_control_plane_xds_ack ", xds_ack.load(), "\n");
  family("envoy_control_plane_xds_nack", true);
  absl::StrAppend(&out, "envoy_control_plane_xds_nack ", xds_nack.load(), "\n");
  for (const Metric& m : ServerMetrics()) {
    family(absl::StrCat("envoy_server_", m.name), m.counter);
    absl::StrAppend(&out, "envoy_server_", m.name, " ", m.value, "\n");
  }
  return out;
}

}  // namespace meshpilot::sidecar
