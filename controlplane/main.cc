// meshpilot: serves Istio-style mesh config to Envoy, meshproxy and proxyless gRPC over ADS.
//
//   source (Kubernetes API or a folder of YAML) -> MeshState -> push controller (debounce) -> snapshot cache
//   -> ADS server (gRPC, port 15010) ; debug HTTP (port 15014)

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/flags.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/cache/snapshot_cache.h"
#include "controlplane/debug/debug_handler.h"
#include "controlplane/debug/http_server.h"
#include "controlplane/debug/metrics.h"
#include "controlplane/push/push_controller.h"
#include "controlplane/source/file/file_source.h"
#include "controlplane/source/kube/kube_source.h"
#include "controlplane/validate/validate.h"
#include "controlplane/xds/server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, config_dir, "", "Folder of Kubernetes/Istio YAML to serve (watched).");
ABSL_FLAG(std::string, kubeconfig, "", "Serve the cluster this kubeconfig file names.");
ABSL_FLAG(std::string, context, "", "With --kubeconfig: the context to use (default: current).");
ABSL_FLAG(bool, in_cluster, false,
          "Serve the cluster meshpilot runs in, with its pod's service account.");
ABSL_FLAG(std::vector<std::string>, watched_namespaces, {},
          "Comma-separated namespaces to read from the cluster (default: all).");
ABSL_FLAG(std::string, namespace_selector, "",
          "Kubernetes label selector ('mesh=on,tier in (a,b),!legacy'): admit only the objects "
          "of namespaces whose labels match, as istiod's discoverySelectors (default: all).");
ABSL_FLAG(bool, legacy_endpoints, false,
          "Read v1 Endpoints instead of discovery.k8s.io/v1 EndpointSlices.");
ABSL_FLAG(bool, write_status, true,
          "With a cluster: write validation results to the status of VirtualServices, "
          "DestinationRules and AuthorizationPolicies, and Events for rejected ones.");
ABSL_FLAG(bool, leader_elect, true,
          "Write status only while holding the Lease meshpilot-leader (several replicas may "
          "run); false: this replica always writes.");
ABSL_FLAG(std::string, leader_election_namespace, "meshpilot-system",
          "Namespace of the leader election Lease.");
ABSL_FLAG(absl::Duration, leader_lease_duration, absl::Seconds(15),
          "A Lease not renewed for this long may be taken over.");
ABSL_FLAG(absl::Duration, leader_renew_period, absl::Seconds(5),
          "How often the leader renews the Lease.");
ABSL_FLAG(absl::Duration, leader_retry_period, absl::Seconds(2),
          "How often the other replicas look whether the Lease is free.");
ABSL_FLAG(std::string, listen_address, "0.0.0.0", "Address the xDS and debug servers bind.");
ABSL_FLAG(int, xds_port, 15010, "Plaintext ADS (gRPC) port.");
ABSL_FLAG(int, debug_port, 15014, "Debug and metrics HTTP port.");
ABSL_FLAG(absl::Duration, debounce_after, absl::Milliseconds(100),
          "Push once config has been quiet this long.");
ABSL_FLAG(absl::Duration, debounce_max, absl::Seconds(1),
          "Push at the latest this long after the first change of a burst.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error.");

namespace meshpilot {
namespace {

// The one config source chosen by the flags; Start() publishes to the push controller.
class ConfigSource {
 public:
  virtual ~ConfigSource() = default;
  virtual absl::Status Start() = 0;
  virtual void Stop() = 0;
  // A state it published has been pushed; `warnings` are the translator's about it.
  virtual void OnPushed(uint64_t state_version, std::vector<model::ConfigError> warnings) = 0;
};

template <typename Source>
class SourceOf : public ConfigSource {
 public:
  template <typename... Args>
  explicit SourceOf(Args&&... args) : source_(std::forward<Args>(args)...) {}
  absl::Status Start() override { return source_.Start(); }
  void Stop() override { source_.Stop(); }
  void OnPushed(uint64_t state_version, std::vector<model::ConfigError> warnings) override {
    // Only sources that write status back care.
    if constexpr (requires { source_.OnPushed(state_version, std::move(warnings)); }) {
      source_.OnPushed(state_version, std::move(warnings));
    }
  }

 private:
  Source source_;
};

absl::StatusOr<std::unique_ptr<ConfigSource>> MakeSource(
    std::function<void(model::MeshStatePtr)> publish) {
  const std::string config_dir = absl::GetFlag(FLAGS_config_dir);
  const std::string kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  const bool in_cluster = absl::GetFlag(FLAGS_in_cluster);
  if (!config_dir.empty() + !kubeconfig.empty() + in_cluster != 1) {
    return absl::InvalidArgumentError(
        "choose exactly one config source: --config-dir, --kubeconfig or --in-cluster");
  }
  if (!config_dir.empty()) {
    return std::make_unique<SourceOf<source::FileSource>>(config_dir, std::move(publish));
  }
  absl::StatusOr<source::ClusterConfig> cluster =
      in_cluster ? source::InClusterConfig()
                 : source::LoadKubeconfig(kubeconfig, absl::GetFlag(FLAGS_context));
  if (!cluster.ok()) return cluster.status();
  spdlog::info("kube: reading {}", cluster->server);
  source::KubeSource::Options options;
  for (const std::string& ns : absl::GetFlag(FLAGS_watched_namespaces)) {
    if (!ns.empty()) options.watched_namespaces.push_back(ns);
  }
  absl::StatusOr<source::LabelSelector> selector =
      source::LabelSelector::Parse(absl::GetFlag(FLAGS_namespace_selector));
  if (!selector.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--namespace-selector \"",
                                                   absl::GetFlag(FLAGS_namespace_selector),
                                                   "\": ", selector.status().message()));
  }
  options.namespace_selector = *std::move(selector);
  options.legacy_endpoints = absl::GetFlag(FLAGS_legacy_endpoints);
  options.status.write = absl::GetFlag(FLAGS_write_status);
  options.status.leader_elect = absl::GetFlag(FLAGS_leader_elect);
  options.status.lease.namespace_ = absl::GetFlag(FLAGS_leader_election_namespace);
  options.status.lease.identity = source::DefaultIdentity();
  options.status.lease.lease_duration = std::chrono::seconds(
      absl::ToInt64Seconds(absl::GetFlag(FLAGS_leader_lease_duration)));
  options.status.lease.renew_period = std::chrono::milliseconds(
      absl::ToInt64Milliseconds(absl::GetFlag(FLAGS_leader_renew_period)));
  options.status.lease.retry_period = std::chrono::milliseconds(
      absl::ToInt64Milliseconds(absl::GetFlag(FLAGS_leader_retry_period)));
  return std::make_unique<SourceOf<source::KubeSource>>(*std::move(cluster), std::move(options),
                                                        std::move(publish));
}

int Run() {
  // Logs go to stderr, like istiod's; stdout stays free for tools.
  spdlog::set_default_logger(spdlog::stderr_color_mt("meshpilot"));
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));

  // Signals are taken synchronously by the main thread below; every thread started from
  // here on inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  cache::SnapshotCache cache;
  debug::Metrics metrics;
  xds::AdsServer ads(cache, metrics);
  std::atomic<bool> synced = false;
  std::atomic<ConfigSource*> source_pushed_to = nullptr;

  push::PushController pusher(absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_debounce_after)),
                              absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_debounce_max)),
                              [&](model::MeshStatePtr state) {
                                metrics.RecordConfigErrors(state->errors.size());
                                metrics.RecordStatePushed();
                                const uint64_t version = state->version;
                                cache.SetState(std::move(state));
                                ads.PushAll();
                                synced = true;
                                if (ConfigSource* source = source_pushed_to.load()) {
                                  source->OnPushed(version, cache.warnings());
                                }
                              });

  absl::StatusOr<std::unique_ptr<ConfigSource>> source =
      MakeSource([&](model::MeshStatePtr state) {
        spdlog::info("config: version {} with {} services, {} rejected objects", state->version,
                     state->services.size(), state->errors.size());
        pusher.OnStateChanged(std::move(state));
      });
  if (!source.ok()) {
    spdlog::error("config: {}", source.status().ToString());
    return 2;
  }
  source_pushed_to = source->get();
  if (absl::Status status = (*source)->Start(); !status.ok()) {
    spdlog::error("config: {}", status.ToString());
    return 1;
  }

  const std::string host = absl::GetFlag(FLAGS_listen_address);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(host, ":", absl::GetFlag(FLAGS_xds_port)),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&ads);
  // Proxies hold their stream for hours: let idle ones be pinged rather than dropped.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (grpc_server == nullptr) {
    spdlog::error("xds: cannot listen on {}:{}", host, absl::GetFlag(FLAGS_xds_port));
    return 1;
  }
  spdlog::info("xds: serving ADS on {}:{}", host, absl::GetFlag(FLAGS_xds_port));

  debug::DebugHandler handler(ads, cache, metrics, [&synced] { return synced.load(); });
  debug::HttpServer http(handler);
  if (absl::Status status = http.Start(host, absl::GetFlag(FLAGS_debug_port)); !status.ok()) {
    spdlog::error("{}", status.ToString());
    return 1;
  }
  spdlog::info("debug: serving on http://{}:{}", host, absl::GetFlag(FLAGS_debug_port));

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received signal {}: shutting down", signal);
  source_pushed_to = nullptr;
  (*source)->Stop();
  pusher.Stop();
  ads.CloseAll();
  grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  http.Stop();
  spdlog::info("bye");
  return 0;
}

}  // namespace
}  // namespace meshpilot

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "meshpilot (--config-dir DIR | --kubeconfig FILE | --in-cluster) "
      "[--watched-namespaces a,b] [--namespace-selector 'mesh=on'] "
      "[--leader-election-namespace meshpilot-system] "
      "[--xds-port 15010] [--debug-port 15014]\n"
      "meshpilot validate FILE|DIR...   (offline: exit 1 if an object would be rejected)");
  std::vector<std::string> args = meshpilot::ParseDashedFlags(argc, argv);
  if (!args.empty() && args[0] == "validate") {
    if (args.size() == 1) {
      std::fprintf(stderr, "meshpilot validate: name YAML files or folders to validate\n");
      return 2;
    }
    auto report = meshpilot::validate::ValidatePaths({args.begin() + 1, args.end()});
    std::fputs(meshpilot::validate::FormatReport(report).c_str(), stdout);
    return report.errors.empty() ? 0 : 1;
  }
  if (!args.empty()) {
    std::fprintf(stderr, "meshpilot: unexpected argument \"%s\" (try --help)\n", args[0].c_str());
    return 2;
  }
  return meshpilot::Run();
}
