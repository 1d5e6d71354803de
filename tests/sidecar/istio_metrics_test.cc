// istio_requests_total's per-cluster table: label sets by reporter, protocol, response code and
// gRPC status; bounded size; and the destination service read from Istio's cluster names.

#include <catch2/catch.hpp>

#include <map>
#include <thread>
#include <tuple>
#include <vector>

#include "sidecar/istio_metrics.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar {
namespace {

using Key = std::tuple<bool, bool, unsigned, std::optional<uint32_t>>;

std::map<Key, uint64_t> Counts(const IstioRequestCounts& counts) {
  std::map<Key, uint64_t> out;
  for (const auto& s : counts.Samples()) {
    out[{s.inbound, s.grpc, s.response_code, s.grpc_status}] += s.count;
  }
  return out;
}

TEST_CASE("istio: requests count by reporter, protocol, code and gRPC status") {
  IstioRequestCounts counts;
  for (int i = 0; i < 3; ++i) counts.Count(false, false, 200, std::nullopt);
  counts.Count(false, false, 503, std::nullopt);
  counts.Count(true, false, 200, std::nullopt);
  counts.Count(false, true, 200, 0);
  counts.Count(false, true, 200, 14);
  counts.Count(false, true, 200, 99);  // not a gRPC code: UNKNOWN
  auto c = Counts(counts);
  CHECK(c.size() == 6);
  CHECK(c[{false, false, 200, std::nullopt}] == 3);
  CHECK(c[{false, false, 503, std::nullopt}] == 1);
  CHECK(c[{true, false, 200, std::nullopt}] == 1);
  CHECK(c[{false, true, 200, 0u}] == 1);
  CHECK(c[{false, true, 200, 14u}] == 1);
  CHECK(c[{false, true, 200, 2u}] == 1);
  CHECK(counts.untracked() == 0);
}

TEST_CASE("istio: concurrent counting loses nothing and creates one label set per key") {
  IstioRequestCounts counts;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&counts] {
      for (int i = 0; i < 10000; ++i) counts.Count(false, false, i % 2 ? 200 : 500, std::nullopt);
    });
  }
  for (auto& thread : threads) thread.join();
  auto c = Counts(counts);
  CHECK(counts.Samples().size() == 2);
  CHECK(c[{false, false, 200, std::nullopt}] == 20000);
  CHECK(c[{false, false, 500, std::nullopt}] == 20000);
}

TEST_CASE("istio: the table is bounded; the rest is counted as untracked") {
  IstioRequestCounts counts;
  for (unsigned code = 100; code < 100 + IstioRequestCounts::kSlots + 5; ++code) {
    counts.Count(false, false, code, std::nullopt);
  }
  CHECK(counts.Samples().size() == IstioRequestCounts::kSlots);
  CHECK(counts.untracked() == 5);
}

TEST_CASE("istio: destination service from the cluster name") {
  DestinationService d = DestinationOfCluster("outbound|9080|v1|reviews.bookinfo.svc.cluster.local");
  CHECK(d.service == "reviews.bookinfo.svc.cluster.local");
  CHECK(d.name == "reviews");
  CHECK(d.namespace_ == "bookinfo");
  d = DestinationOfCluster("PassthroughCluster");
  CHECK(d.service == "PassthroughCluster");
  CHECK(d.name == "PassthroughCluster");
  CHECK(d.namespace_ == "unknown");
  CHECK(DestinationOfCluster("inbound|8080||").service == "inbound|8080||");
}

TEST_CASE("istio: the scrape labels the reporter's own workload on its side") {
  StatsStore store;
  store.set_workload({"reviews", "bookinfo"});
  store.Cluster("outbound|9080|v1|ratings.bookinfo.svc.cluster.local")
      ->istio_requests.Count(false, false, 200, std::nullopt);
  store.Cluster("inbound|9080||")->istio_requests.Count(true, true, 200, 5);
  const std::string text = store.RenderPrometheus();
  CHECK(text.find("# TYPE istio_requests_total counter\n") != std::string::npos);
  CHECK(text.find(
            "istio_requests_total{reporter=\"source\",source_workload=\"reviews\","
            "source_workload_namespace=\"bookinfo\",destination_workload=\"unknown\","
            "destination_workload_namespace=\"unknown\","
            "destination_service=\"ratings.bookinfo.svc.cluster.local\","
            "destination_service_name=\"ratings\",destination_service_namespace=\"bookinfo\","
            "request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\"} 1\n") !=
        std::string::npos);
  CHECK(text.find(
            "istio_requests_total{reporter=\"destination\",source_workload=\"unknown\","
            "source_workload_namespace=\"unknown\",destination_workload=\"reviews\","
            "destination_workload_namespace=\"bookinfo\",destination_service=\"inbound|9080||\","
            "destination_service_name=\"inbound|9080||\",destination_service_namespace=\"unknown\","
            "request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"5\"} 1\n") !=
        std::string::npos);
}

}  // namespace
}  // namespace meshpilot::sidecar
