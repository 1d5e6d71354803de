// xds_loadgen: opens N Envoy-like ADS state-of-the-world streams to an xDS server and prints one
// JSON line: the initial sync time per stream (p50/p99/max) and, with --expect-change, how long
// after a trigger every stream held an EDS response carrying --watch-address.
//
//   xds_loadgen --server 127.0.0.1:15010 --streams 1000 --namespaces default
//       --expect-change --watch-address 10.1.0.99 --trigger 'cp new.yaml dir/eps.yaml'
//
// After the initial sync it prints READY, runs --on-ready (untimed, e.g. a config dump), takes
// the time, runs --trigger (or, without one, the time READY was printed counts: the caller
// changes the config itself) and waits for the change.

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/flags.h"
#include "absl/flags/usage.h"
#include "nlohmann/json.hpp"
#include "tools/xds_loadgen/fleet.h"

ABSL_FLAG(std::string, server, "127.0.0.1:15010", "xDS server (host:port, plaintext).");
ABSL_FLAG(int, streams, 1, "Number of ADS streams, one simulated sidecar each.");
ABSL_FLAG(std::vector<std::string>, namespaces, {"default"},
          "Namespaces the sidecars are spread over, round robin.");
ABSL_FLAG(int, channels, 0, "gRPC channels (connections); 0: one per 100 streams.");
ABSL_FLAG(int, distinct_ips, 0,
          "Sidecar IPs cycle over this many addresses; 0: every sidecar has its own.");
ABSL_FLAG(int, sync_timeout_s, 120, "Give up on the initial sync after this many seconds.");
ABSL_FLAG(bool, expect_change, false,
          "After the initial sync, wait until every stream's EDS carries --watch-address.");
ABSL_FLAG(std::string, watch_address, "", "Endpoint address whose arrival is the change.");
ABSL_FLAG(std::string, on_ready, "", "Shell command run after READY, before the timer starts.");
ABSL_FLAG(std::string, trigger, "", "Shell command that makes the change (timed from its start).");
ABSL_FLAG(int, change_timeout_s, 120, "Give up on the change after this many seconds.");
ABSL_FLAG(std::string, label, "", "Copied into the result line.");

namespace meshpilot::loadgen {
namespace {

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Nearest-rank percentiles of `values` (ms), with the count.
nlohmann::json Summary(std::vector<double> values) {
  nlohmann::json out{{"count", values.size()}};
  if (values.empty()) return out;
  std::sort(values.begin(), values.end());
  auto rank = [&](double p) {
    size_t index = static_cast<size_t>(std::ceil(p * values.size())) - 1;
    return values[std::min(index, values.size() - 1)];
  };
  out["p50_ms"] = rank(0.50);
  out["p99_ms"] = rank(0.99);
  out["max_ms"] = values.back();
  return out;
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

int Run() {
  FleetOptions options{.server = absl::GetFlag(FLAGS_server),
                       .streams = absl::GetFlag(FLAGS_streams),
                       .namespaces = absl::GetFlag(FLAGS_namespaces),
                       .channels = absl::GetFlag(FLAGS_channels),
                       .distinct_ips = absl::GetFlag(FLAGS_distinct_ips),
                       .watch_address = absl::GetFlag(FLAGS_watch_address)};
  bool expect_change = absl::GetFlag(FLAGS_expect_change);
  if (options.streams < 1 || options.namespaces.empty()) {
    std::cerr << "xds_loadgen: --streams must be >= 1 and --namespaces non-empty\n";
    return 2;
  }
  if (expect_change && options.watch_address.empty()) {
    std::cerr << "xds_loadgen: --expect-change needs --watch-address\n";
    return 2;
  }

  nlohmann::json result{{"label", absl::GetFlag(FLAGS_label)},
                        {"server", options.server},
                        {"streams", options.streams}};
  Fleet fleet(options);
  Clock::time_point start = Clock::now();
  fleet.Start();
  bool synced = fleet.WaitSynced(start + std::chrono::seconds(absl::GetFlag(FLAGS_sync_timeout_s)));
  Clock::time_point all_synced = Clock::now();
  std::vector<double> sync_ms;
  for (const auto& stream : fleet.streams()) {
    if (auto time = stream->sync_time()) sync_ms.push_back(Ms(*time));
  }
  result["sync"] = Summary(sync_ms);
  result["sync"]["all_ms"] = Ms(all_synced - start);
  result["sync"]["complete"] = synced;

  bool ok = synced;
  if (synced && expect_change) {
    std::cout << "READY" << std::endl;
    if (std::string command = absl::GetFlag(FLAGS_on_ready); !command.empty()) {
      if (std::system(command.c_str()) != 0) std::cerr << "xds_loadgen: --on-ready failed\n";
    }
    int already = fleet.ArmWatch();
    Clock::time_point trigger = Clock::now();
    if (std::string command = absl::GetFlag(FLAGS_trigger); !command.empty()) {
      if (std::system(command.c_str()) != 0) std::cerr << "xds_loadgen: --trigger failed\n";
    }
    bool changed = fleet.WaitChanged(
        trigger + std::chrono::seconds(absl::GetFlag(FLAGS_change_timeout_s)));
    std::vector<double> change_ms;
    for (const auto& stream : fleet.streams()) {
      if (auto at = stream->changed_at()) change_ms.push_back(Ms(*at - trigger));
    }
    result["change"] = Summary(change_ms);
    result["change"]["complete"] = changed;
    result["change"]["present_before_trigger"] = already;
    ok = changed && already == 0;
  }

  uint64_t responses = 0, bytes = 0;
  for (const auto& stream : fleet.streams()) {
    responses += stream->responses();
    bytes += stream->bytes();
  }
  int ended_early = fleet.ended();
  fleet.Stop();
  std::string first_error;
  for (const auto& stream : fleet.streams()) {
    const grpc::Status& status = stream->status();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      first_error = status.error_message();
      break;
    }
  }
  result["responses"] = responses;
  result["bytes"] = bytes;
  result["ended_early"] = ended_early;
  if (!first_error.empty()) result["first_error"] = first_error;
  result["loadgen_cpu_s"] = CpuSeconds();
  result["ok"] = ok && ended_early == 0;
  std::cout << result.dump() << std::endl;
  return result["ok"].get<bool>() ? 0 : 1;
}

}  // namespace
}  // namespace meshpilot::loadgen

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "xds_loadgen --server HOST:PORT --streams N [--namespaces a,b] [--expect-change "
      "--watch-address IP [--on-ready CMD] [--trigger CMD]]");
  meshpilot::ParseDashedFlags(argc, argv);
  return meshpilot::loadgen::Run();
}
