// meshproxy: the bundled sidecar. Connects to meshpilot over ADS and proxies connections by
// the Listeners, Routes, Clusters and Endpoints it receives.

#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "absl/flags/flag.h"
#include "common/flags.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "sidecar/admin/admin_handler.h"
#include "sidecar/admin/admin_server.h"
#include "sidecar/bootstrap.h"
#include "sidecar/proxy_config.h"
#include "sidecar/server/worker.h"
#include "sidecar/stats.h"
#include "sidecar/xds/ads_client.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, bootstrap, "", "Bootstrap JSON file (node, xds_address, ports); flags "
                                      "given on the command line override it.");
ABSL_FLAG(std::string, xds_address, "", "meshpilot's ADS address (default 127.0.0.1:15010).");
ABSL_FLAG(std::string, node_id, "", "Node id, sidecar~IP~POD.NS~NS.svc.cluster.local.");
ABSL_FLAG(std::string, namespace, "", "The pod's namespace (metadata NAMESPACE).");
ABSL_FLAG(std::string, pod_name, "", "The pod's name (metadata NAME).");
ABSL_FLAG(std::string, pod_ip, "127.0.0.1", "The pod's IP, for a node id built from flags.");
ABSL_FLAG(std::string, service_account, "", "The pod's service account.");
ABSL_FLAG(std::vector<std::string>, labels, {}, "The pod's labels, k=v,k=v (metadata LABELS).");
ABSL_FLAG(std::string, workload_name, "",
          "The pod's workload, its owner's name (metadata WORKLOAD_NAME; default: the app label, "
          "else the pod name).");
ABSL_FLAG(std::string, cluster_id, "Kubernetes", "The cluster the pod runs in (metadata CLUSTER_ID).");
ABSL_FLAG(std::string, locality, "",
          "Where the pod runs, region/zone/subzone (node.locality), for locality load balancing.");
ABSL_FLAG(int, admin_port, -1, "Admin port on --admin-address (default 15000).");
ABSL_FLAG(std::string, admin_address, "", "Admin address (default 127.0.0.1).");
ABSL_FLAG(int, readiness_port, -1, "Port of /healthz/ready on all addresses (default 15021; 0: off).");
ABSL_FLAG(int, concurrency, -1, "Worker threads (default: one per core).");
ABSL_FLAG(absl::Duration, xds_initial_backoff, absl::Milliseconds(250),
          "First reconnect back-off ceiling; doubles per failed attempt (full jitter).");
ABSL_FLAG(absl::Duration, xds_max_backoff, absl::Seconds(30), "Largest reconnect back-off.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error.");
ABSL_FLAG(absl::Duration, drain_time, absl::Seconds(45),
          "How long /drain_listeners?graceful keeps the drained listeners accepting (Envoy's "
          "--drain-time-s; Istio's drainDuration).");
ABSL_FLAG(absl::Duration, termination_drain_duration, absl::ZeroDuration(),
          "On SIGTERM, first drain the inbound listeners gracefully for this long, as "
          "pilot-agent does (Istio's terminationDrainDuration, 5s); 0: exit at once. A second "
          "signal exits at once.");

namespace meshpilot::sidecar {
namespace {

int Run() {
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  Bootstrap bootstrap;
  if (const std::string path = absl::GetFlag(FLAGS_bootstrap); !path.empty()) {
    absl::StatusOr<Bootstrap> loaded = LoadBootstrapFile(path, bootstrap);
    if (!loaded.ok()) {
      spdlog::error("{}", loaded.status().ToString());
      return 2;
    }
    bootstrap = *std::move(loaded);
  }
  if (!absl::GetFlag(FLAGS_node_id).empty() || !absl::GetFlag(FLAGS_pod_name).empty() ||
      bootstrap.node.id().empty()) {
    NodeIdentity identity;
    identity.node_id = absl::GetFlag(FLAGS_node_id);
    identity.pod_ip = absl::GetFlag(FLAGS_pod_ip);
    identity.pod_name = absl::GetFlag(FLAGS_pod_name);
    identity.namespace_ = absl::GetFlag(FLAGS_namespace);
    identity.service_account = absl::GetFlag(FLAGS_service_account);
    identity.locality = absl::GetFlag(FLAGS_locality);
    identity.workload_name = absl::GetFlag(FLAGS_workload_name);
    identity.cluster_id = absl::GetFlag(FLAGS_cluster_id);
    for (const std::string& label : absl::GetFlag(FLAGS_labels)) {
      std::vector<std::string> kv = absl::StrSplit(label, absl::MaxSplits('=', 1));
      identity.labels[kv[0]] = kv.size() == 2 ? kv[1] : "";
    }
    absl::StatusOr<envoy::config::core::v3::Node> node = BuildNode(identity);
    if (!node.ok()) {
      spdlog::error("{}", node.status().ToString());
      return 2;
    }
    bootstrap.node = *std::move(node);
  }
  if (!absl::GetFlag(FLAGS_xds_address).empty()) bootstrap.xds_address = absl::GetFlag(FLAGS_xds_address);
  if (!absl::GetFlag(FLAGS_admin_address).empty()) {
    bootstrap.admin_address = absl::GetFlag(FLAGS_admin_address);
  }
  if (absl::GetFlag(FLAGS_admin_port) >= 0) bootstrap.admin_port = absl::GetFlag(FLAGS_admin_port);
  if (absl::GetFlag(FLAGS_readiness_port) >= 0) {
    bootstrap.readiness_port = absl::GetFlag(FLAGS_readiness_port);
  }
  if (absl::GetFlag(FLAGS_concurrency) >= 0) bootstrap.concurrency = absl::GetFlag(FLAGS_concurrency);
  const int concurrency = bootstrap.concurrency > 0
                              ? bootstrap.concurrency
                              : std::max(1u, std::thread::hardware_concurrency());

  ConfigStore store;
  StatsStore stats;
  Peers().SetLocal(bootstrap.node);
  std::vector<std::unique_ptr<server::Worker>> workers;
  for (int i = 0; i < concurrency; ++i) {
    workers.push_back(std::make_unique<server::Worker>(i, store));
    workers.back()->Start();
  }

  std::mutex mu;
  std::condition_variable quit_cv;
  bool quit = false;
  auto request_quit = [&] {
    std::lock_guard<std::mutex> lock(mu);
    quit = true;
    quit_cv.notify_all();
  };

  const auto drain_time = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_drain_time));
  admin::AdminHandler handler(store, stats, bootstrap.node, request_quit,
                              [&workers, drain_time](admin::DrainRequest request) {
                                for (auto& worker : workers) {
                                  worker->Drain(request.inbound_only,
                                                request.graceful ? drain_time
                                                                 : std::chrono::milliseconds(0));
                                }
                              });
  admin::AdminServer admin(handler);
  absl::StatusOr<uint16_t> admin_port = admin.Listen(bootstrap.admin_address, bootstrap.admin_port);
  if (!admin_port.ok()) {
    spdlog::error("admin: {}", admin_port.status().ToString());
    return 1;
  }
  spdlog::info("admin: listening on {}:{}", bootstrap.admin_address, *admin_port);
  if (bootstrap.readiness_port != 0) {
    absl::StatusOr<uint16_t> ready_port = admin.Listen("0.0.0.0", bootstrap.readiness_port);
    if (!ready_port.ok()) {
      spdlog::error("readiness: {}", ready_port.status().ToString());
      return 1;
    }
    spdlog::info("readiness: /healthz/ready on 0.0.0.0:{}", *ready_port);
  }
  boost::asio::signal_set signals(admin.io(), SIGTERM, SIGINT);
  boost::asio::steady_timer termination(admin.io());
  const auto termination_drain =
      absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_termination_drain_duration));
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        if (signal != SIGTERM || termination_drain.count() <= 0 ||
            termination.expiry() != boost::asio::steady_timer::time_point()) {
          request_quit();
          return;
        }
        // As pilot-agent on SIGTERM: the inbound listeners drain (the application's own calls
        // out keep working), then meshproxy exits.
        spdlog::info("meshproxy: SIGTERM: draining inbound listeners for {} ms, then exiting",
                     termination_drain.count());
        handler.Handle("POST", "/drain_listeners?inboundonly&graceful");
        termination.expires_after(termination_drain);
        termination.async_wait([&](const boost::system::error_code& timer_ec) {
          if (!timer_ec) request_quit();
        });
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);
  admin.Start();

  xds::AdsClientOptions options;
  options.server_address = bootstrap.xds_address;
  options.node = bootstrap.node;
  options.initial_backoff = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_xds_initial_backoff));
  options.max_backoff = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_xds_max_backoff));
  if (options.initial_backoff.count() <= 0 || options.max_backoff < options.initial_backoff) {
    spdlog::error("--xds-initial-backoff must be > 0 and <= --xds-max-backoff");
    return 2;
  }
  options.on_update = [&workers](std::shared_ptr<const ProxyConfig> config) {
    for (auto& worker : workers) worker->ApplyListeners(config);
  };
  spdlog::info("meshproxy: node {} -> xds {}, {} workers", bootstrap.node.id(),
               bootstrap.xds_address, concurrency);
  xds::AdsClient ads(options, stats, store);
  ads.Start();

  {
    std::unique_lock<std::mutex> lock(mu);
    quit_cv.wait(lock, [&] { return quit; });
  }
  spdlog::info("meshproxy: shutting down");
  ads.Stop();
  for (auto& worker : workers) worker->Stop();
  admin.Stop();
  spdlog::info("bye");
  return 0;
}

}  // namespace
}  // namespace meshpilot::sidecar

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  absl::SetProgramUsageMessage(
      "meshproxy --xds-address 127.0.0.1:15010 (--node-id ID | --pod-name P --namespace NS) "
      "[--admin-port 15000] [--concurrency N] [--bootstrap FILE]");
  meshpilot::ParseDashedFlags(argc, argv);
  return meshpilot::sidecar::Run();
}
