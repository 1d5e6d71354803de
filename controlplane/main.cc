// meshpilot: serves Istio-style mesh config to Envoy, meshproxy and proxyless gRPC over ADS.
//
//   sources (folder of YAML) -> MeshState -> push controller (debounce) -> snapshot cache
//   -> ADS server (gRPC, port 15010) ; debug HTTP (port 15014)

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "controlplane/cache/snapshot_cache.h"
#include "controlplane/debug/debug_handler.h"
#include "controlplane/debug/http_server.h"
#include "controlplane/debug/metrics.h"
#include "controlplane/push/push_controller.h"
#include "controlplane/source/file/file_source.h"
#include "controlplane/xds/server.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, config_dir, "", "Folder of Kubernetes/Istio YAML to serve (watched).");
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

int Run() {
  // Logs go to stderr, like istiod's; stdout stays free for tools.
  spdlog::set_default_logger(spdlog::stderr_color_mt("meshpilot"));
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  const std::string config_dir = absl::GetFlag(FLAGS_config_dir);
  if (config_dir.empty()) {
    spdlog::error("--config-dir is required (the Kubernetes source comes in a later release)");
    return 2;
  }

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

  push::PushController pusher(absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_debounce_after)),
                              absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_debounce_max)),
                              [&](model::MeshStatePtr state) {
                                metrics.RecordConfigErrors(state->errors.size());
                                metrics.RecordStatePushed();
                                cache.SetState(std::move(state));
                                ads.PushAll();
                                synced = true;
                              });

  source::FileSource source(config_dir, [&](model::MeshStatePtr state) {
    spdlog::info("config: version {} with {} services, {} rejected objects", state->version,
                 state->services.size(), state->errors.size());
    pusher.OnStateChanged(std::move(state));
  });
  if (absl::Status status = source.Start(); !status.ok()) {
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
  source.Stop();
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
      "meshpilot --config-dir DIR [--xds-port 15010] [--debug-port 15014]");
  // Flags are spelled with dashes, as istiod's are; absl wants underscores.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> argv_underscored;
  for (std::string& arg : args) {
    if (arg.starts_with("--")) {
      size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
    }
    argv_underscored.push_back(arg.data());
  }
  absl::ParseCommandLine(argv_underscored.size(), argv_underscored.data());
  return meshpilot::Run();
}
