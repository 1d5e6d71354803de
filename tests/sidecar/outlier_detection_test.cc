// Passive outlier detection: thresholds, max_ejection_percent, the ejection time growing with
// each ejection, return after it, a success resetting the counts, picks skipping ejected hosts
// and Envoy's panic mode; the success-rate and failure-percentage detectors over an interval.
// Time is passed in, so nothing here sleeps.

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "sidecar/upstream/load_balancer.h"

namespace meshpilot::sidecar {
namespace {

using upstream::Host;
using upstream::LoadBalancer;
using upstream::OutlierDetector;
using namespace std::chrono_literals;

constexpr uint64_t kEnforce = 0;  // a random draw under every enforcing_* percentage above 0

std::vector<config::Endpoint> Endpoints(int n) {
  std::vector<config::Endpoint> endpoints;
  for (int i = 1; i <= n; ++i) {
    endpoints.push_back({boost::asio::ip::tcp::endpoint(
                             boost::asio::ip::make_address("10.0.0.1"), static_cast<uint16_t>(i)),
                         1});
  }
  return endpoints;
}

config::OutlierDetection Consecutive5xx(uint32_t n, uint32_t max_percent = 100) {
  config::OutlierDetection od;
  od.consecutive_5xx = n;
  od.base_ejection_time = 30s;
  od.max_ejection_percent = max_percent;
  return od;
}

namespace testing_proto {
envoy::config::cluster::v3::OutlierDetection OutlierDetectionProto() {
  envoy::config::cluster::v3::OutlierDetection proto;
  proto.mutable_interval()->set_seconds(2);
  proto.mutable_success_rate_minimum_hosts()->set_value(3);
  proto.mutable_success_rate_request_volume()->set_value(20);
  proto.mutable_success_rate_stdev_factor()->set_value(1000);
  proto.mutable_enforcing_success_rate()->set_value(0);
  proto.mutable_failure_percentage_threshold()->set_value(60);
  proto.mutable_enforcing_failure_percentage()->set_value(100);
  proto.mutable_failure_percentage_minimum_hosts()->set_value(2);
  proto.mutable_failure_percentage_request_volume()->set_value(10);
  return proto;
}
}  // namespace testing_proto

struct Fixture {
  Fixture(int hosts, const config::OutlierDetection& od)
      : stats(std::make_shared<ClusterStats>()),
        lb(config::LbPolicy::kRoundRobin, 2, {{"z", 0, Endpoints(hosts)}}, 1024, od, stats) {}
  const Host& host(size_t i) const { return *lb.Hosts()[i]; }
  const OutlierDetector& outlier() const { return *lb.outlier(); }
  void Fail(size_t i, int times, unsigned status = 500) {
    for (int k = 0; k < times; ++k) outlier().Report(host(i), status, kEnforce, now);
  }
  std::map<uint16_t, int> Spread(int picks) const {
    std::mt19937_64 rng(7);
    std::map<uint16_t, int> counts;
    for (int k = 0; k < picks; ++k) counts[lb.Pick(rng)->address.port()]++;
    return counts;
  }

  std::shared_ptr<ClusterStats> stats;
  LoadBalancer lb;
  OutlierDetector::Clock::time_point now = OutlierDetector::Clock::now();
};

TEST_CASE("outlier: a detector only with outlier_detection") {
  LoadBalancer lb(config::LbPolicy::kRoundRobin, 2, {{"z", 0, Endpoints(2)}});
  CHECK(lb.outlier() == nullptr);
  LoadBalancer with(config::LbPolicy::kRoundRobin, 2, {{"z", 0, Endpoints(2)}}, 1024,
                    Consecutive5xx(3));
  CHECK(with.outlier() != nullptr);
}

TEST_CASE("outlier: consecutive 5xx eject at the threshold; picks skip the host") {
  Fixture f(4, Consecutive5xx(3));
  f.Fail(0, 2);
  CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now));
  f.Fail(0, 1);
  CHECK(f.outlier().Ejected(f.host(0), f.now));
  CHECK(f.stats->outlier_detection_ejections_enforced_total == 1);
  CHECK(f.stats->outlier_detection_ejections_active == 1);
  auto counts = f.Spread(300);
  CHECK(counts.count(1) == 0);
  CHECK(counts[2] == 100);
  CHECK(counts[3] == 100);
  CHECK(counts[4] == 100);
}

TEST_CASE("outlier: a success resets the consecutive counts") {
  Fixture f(2, Consecutive5xx(3));
  f.Fail(0, 2);
  f.outlier().Report(f.host(0), 200, kEnforce, f.now);
  f.Fail(0, 2);
  CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now));
  f.Fail(0, 1);
  CHECK(f.outlier().Ejected(f.host(0), f.now));
}

TEST_CASE("outlier: gateway failures count separately; enforcing 0 never ejects") {
  config::OutlierDetection od = Consecutive5xx(10);
  od.consecutive_gateway_failure = 2;
  od.enforcing_consecutive_gateway_failure = 100;
  Fixture f(2, od);
  f.Fail(0, 1, 502);
  f.Fail(0, 1, 500);  // a 5xx that is not a gateway failure resets that count
  f.Fail(0, 1, 503);
  CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now));
  f.Fail(0, 1, 504);
  CHECK(f.outlier().Ejected(f.host(0), f.now));

  od.enforcing_consecutive_gateway_failure = 0;  // Envoy's default
  Fixture g(2, od);
  g.Fail(0, 5, 503);
  CHECK_FALSE(g.outlier().Ejected(g.host(0), g.now));
}

TEST_CASE("outlier: max_ejection_percent caps ejections but always allows one") {
  Fixture f(10, Consecutive5xx(1, 20));
  for (size_t i = 0; i < 5; ++i) f.Fail(i, 1);
  CHECK(f.outlier().ejected_count() == 2);
  CHECK(f.outlier().Ejected(f.host(0), f.now));
  CHECK(f.outlier().Ejected(f.host(1), f.now));
  CHECK_FALSE(f.outlier().Ejected(f.host(2), f.now));

  Fixture one(2, Consecutive5xx(1, 10));  // 10% of 2 hosts is none, yet one goes
  one.Fail(0, 1);
  one.Fail(1, 1);
  CHECK(one.outlier().Ejected(one.host(0), one.now));
  CHECK_FALSE(one.outlier().Ejected(one.host(1), one.now));
}

TEST_CASE("outlier: hosts return after base_ejection_time times their ejections") {
  Fixture f(2, Consecutive5xx(2));
  f.Fail(0, 2);
  CHECK(f.outlier().Ejected(f.host(0), f.now + 29s));
  CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now + 30s));
  CHECK(f.outlier().ejected_count() == 0);
  CHECK(f.stats->outlier_detection_ejections_active == 0);
  // Back in the rotation, and the counts start again.
  f.now += 30s;
  f.Fail(0, 1);
  CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now));
  f.Fail(0, 1);  // second ejection: 60 s
  CHECK(f.outlier().Ejected(f.host(0), f.now + 59s));
  CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now + 60s));
  CHECK(f.stats->outlier_detection_ejections_enforced_total == 2);
}

TEST_CASE("outlier: the ejection time is capped by max_ejection_time") {
  config::OutlierDetection od = Consecutive5xx(1);
  od.max_ejection_time = 45s;
  Fixture f(2, od);
  for (int round = 0; round < 3; ++round) {
    f.Fail(0, 1);
    CHECK(f.outlier().Ejected(f.host(0), f.now + 29s));
    f.now += 45s;
    CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now));
  }
}

TEST_CASE("outlier: each interval a host stays in lowers its ejection multiplier") {
  Fixture f(2, Consecutive5xx(1));  // base_ejection_time 30 s, interval 10 s
  const auto t0 = f.now;
  f.Fail(0, 1);  // out until t0 + 30 s
  f.now = t0 + 30s;
  f.Fail(0, 1);  // back at once and out again: twice the time, until t0 + 90 s
  CHECK(f.outlier().Ejected(f.host(0), t0 + 89s));
  CHECK_FALSE(f.outlier().Ejected(f.host(0), t0 + 90s));
  SECTION("one whole interval in: one less") {
    f.now = t0 + 100s;  // the interval from 90 to 100 ends with the next report
    f.outlier().Report(f.host(1), 200, kEnforce, f.now);
    f.Fail(0, 1);  // multiplier 2 - 1 + 1
    CHECK(f.outlier().Ejected(f.host(0), f.now + 59s));
    CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now + 60s));
  }
  SECTION("long enough in: back to base_ejection_time") {
    f.now = t0 + 140s;
    f.Fail(0, 1);
    CHECK(f.outlier().Ejected(f.host(0), f.now + 29s));
    CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now + 30s));
  }
}

TEST_CASE("outlier: a pick returns a host whose time has passed") {
  Fixture f(2, Consecutive5xx(1));
  f.Fail(0, 1);
  CHECK(f.Spread(10).count(1) == 0);
  // Pick uses the real clock: move the ejection into the past.
  f.host(0).outlier.ejected_until = 1;
  auto counts = f.Spread(10);
  CHECK(counts[1] == 5);
  CHECK(f.outlier().ejected_count() == 0);
}

TEST_CASE("outlier: panic mode uses every host when under half are healthy") {
  Fixture f(3, Consecutive5xx(1, 100));
  f.Fail(0, 1);
  CHECK(f.Spread(30).count(1) == 0);  // 2 of 3 healthy: over the 50% threshold
  f.Fail(1, 1);
  CHECK(f.outlier().ejected_count() == 2);
  auto counts = f.Spread(30);  // 1 of 3: panic, round robin over all
  CHECK(counts[1] == 10);
  CHECK(counts[2] == 10);
  CHECK(counts[3] == 10);
}

TEST_CASE("outlier: healthy_panic_threshold 0 (Istio's default) never panics") {
  config::OutlierDetection od = Consecutive5xx(1, 100);
  od.healthy_panic_threshold = 0;
  Fixture f(2, od);
  f.Fail(0, 1);
  f.Fail(1, 1);
  CHECK(f.outlier().ejected_count() == 2);
  std::mt19937_64 rng(1);
  CHECK(f.lb.Pick(rng) == nullptr);  // the router's 503 "no healthy upstream"
}

TEST_CASE("outlier: ring hash walks past ejected hosts") {
  config::OutlierDetection od = Consecutive5xx(1);
  auto stats = std::make_shared<ClusterStats>();
  LoadBalancer lb(config::LbPolicy::kRingHash, 2, {{"z", 0, Endpoints(4)}}, 1024, od, stats);
  std::mt19937_64 rng(1);
  const Host* chosen = lb.Pick(rng, nullptr, 12345);
  lb.outlier()->Report(*chosen, 503, kEnforce, OutlierDetector::Clock::now());
  const Host* next = lb.Pick(rng, nullptr, 12345);
  CHECK(next != chosen);
  CHECK(lb.Pick(rng, nullptr, 12345) == next);  // still consistent
}

TEST_CASE("outlier: ParseOutlierDetection reads Envoy's fields and rejects bad ones") {
  envoy::config::cluster::v3::OutlierDetection proto;
  proto.mutable_consecutive_5xx()->set_value(7);
  proto.mutable_base_ejection_time()->set_seconds(900);
  proto.mutable_max_ejection_percent()->set_value(50);
  proto.mutable_consecutive_gateway_failure()->set_value(3);
  proto.mutable_enforcing_consecutive_gateway_failure()->set_value(100);
  auto od = config::ParseOutlierDetection(proto);
  REQUIRE(od.ok());
  CHECK(od->consecutive_5xx == 7);
  CHECK(od->base_ejection_time == 900s);
  CHECK(od->max_ejection_percent == 50);
  CHECK(od->consecutive_gateway_failure == 3);
  CHECK(od->enforcing_consecutive_gateway_failure == 100);
  CHECK(od->enforcing_consecutive_5xx == 100);
  CHECK(od->max_ejection_time == 300s);

  proto.mutable_max_ejection_percent()->set_value(101);
  CHECK(config::ParseOutlierDetection(proto).status().message() ==
        "outlier_detection.max_ejection_percent: 101 is over 100");
  proto.clear_max_ejection_percent();
  proto.mutable_base_ejection_time()->set_seconds(0);
  CHECK(config::ParseOutlierDetection(proto).status().message() ==
        "outlier_detection.base_ejection_time: must be > 0");
}

// Only the interval detectors: consecutive errors never eject.
config::OutlierDetection IntervalDetectors() {
  config::OutlierDetection od;
  od.consecutive_5xx = 1000000;
  od.enforcing_consecutive_5xx = 0;
  od.max_ejection_percent = 100;
  return od;
}

// `requests` results at host `i`, the first `failures` of them 503.
void Traffic(Fixture& f, size_t i, int requests, int failures, OutlierDetector::Clock::time_point at) {
  for (int k = 0; k < requests; ++k) f.outlier().Report(f.host(i), k < failures ? 503 : 200, kEnforce, at);
}

// The first report after the interval ends evaluates it.
void EndInterval(Fixture& f, OutlierDetector::Clock::time_point at) {
  f.outlier().Report(f.host(f.lb.Hosts().size() - 1), 200, kEnforce, at);
}

TEST_CASE("outlier: success rate ejects a host far below the others' mean") {
  Fixture f(5, IntervalDetectors());
  // Success rates 50, 100, 99, 98, 100: mean 89.4, deviation 19.7, threshold 89.4 - 1.9 * 19.7.
  const int failures[] = {50, 0, 1, 2, 0};
  for (size_t i = 0; i < 5; ++i) Traffic(f, i, 100, failures[i], f.now);
  CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now + 9s));
  EndInterval(f, f.now + 10s);  // Envoy's default interval
  CHECK(f.outlier().Ejected(f.host(0), f.now + 10s));
  for (size_t i = 1; i < 5; ++i) CHECK_FALSE(f.outlier().Ejected(f.host(i), f.now + 10s));
  CHECK(f.stats->outlier_detection_ejections_detected_success_rate == 1);
  CHECK(f.stats->outlier_detection_ejections_enforced_success_rate == 1);
  CHECK(f.stats->outlier_detection_ejections_enforced_total == 1);
  // The next interval starts afresh: without new traffic nothing more is detected.
  EndInterval(f, f.now + 20s);
  CHECK(f.stats->outlier_detection_ejections_detected_success_rate == 1);
}

TEST_CASE("outlier: success rate needs minimum hosts with the request volume") {
  const int failures[] = {50, 0, 1, 2, 0};
  SECTION("four hosts are too few") {
    Fixture f(4, IntervalDetectors());
    for (size_t i = 0; i < 4; ++i) Traffic(f, i, 100, failures[i], f.now);
    EndInterval(f, f.now + 10s);
    CHECK(f.outlier().ejected_count() == 0);
  }
  SECTION("a host under success_rate_request_volume is not counted") {
    Fixture f(5, IntervalDetectors());
    for (size_t i = 0; i < 5; ++i) Traffic(f, i, i == 4 ? 50 : 100, failures[i], f.now);
    EndInterval(f, f.now + 10s);
    CHECK(f.outlier().ejected_count() == 0);
  }
  SECTION("enforcing_success_rate 0 (Istio's) detects but never ejects") {
    config::OutlierDetection od = IntervalDetectors();
    od.enforcing_success_rate = 0;
    Fixture f(5, od);
    for (size_t i = 0; i < 5; ++i) Traffic(f, i, 100, failures[i], f.now);
    EndInterval(f, f.now + 10s);
    CHECK(f.outlier().ejected_count() == 0);
    CHECK(f.stats->outlier_detection_ejections_detected_success_rate == 1);
    CHECK(f.stats->outlier_detection_ejections_enforced_success_rate == 0);
  }
  SECTION("the interval is the configured one") {
    config::OutlierDetection od = IntervalDetectors();
    od.interval = 1s;
    Fixture f(5, od);
    for (size_t i = 0; i < 5; ++i) Traffic(f, i, 100, failures[i], f.now);
    EndInterval(f, f.now + 1s);
    CHECK(f.outlier().Ejected(f.host(0), f.now + 1s));
  }
}

TEST_CASE("outlier: failure percentage ejects hosts at the threshold when enforced") {
  config::OutlierDetection od = IntervalDetectors();
  od.enforcing_success_rate = 0;
  // 90% failures are over the default threshold (85); 84% and 80% are not.
  const int failures[] = {45, 0, 0, 42, 0, 40};
  SECTION("enforcing_failure_percentage is 0 by default") {
    Fixture f(6, od);
    for (size_t i = 0; i < 6; ++i) Traffic(f, i, 50, failures[i], f.now);
    EndInterval(f, f.now + 10s);
    CHECK(f.outlier().ejected_count() == 0);
    CHECK(f.stats->outlier_detection_ejections_detected_failure_percentage == 1);
  }
  SECTION("enforced") {
    od.enforcing_failure_percentage = 100;
    od.failure_percentage_minimum_hosts = 3;
    Fixture f(6, od);
    for (size_t i = 0; i < 6; ++i) Traffic(f, i, 50, failures[i], f.now);
    EndInterval(f, f.now + 10s);
    CHECK(f.outlier().Ejected(f.host(0), f.now + 10s));
    CHECK_FALSE(f.outlier().Ejected(f.host(3), f.now + 10s));  // 84%
    CHECK_FALSE(f.outlier().Ejected(f.host(5), f.now + 10s));
    CHECK(f.stats->outlier_detection_ejections_enforced_failure_percentage == 1);
  }
  SECTION("hosts under failure_percentage_request_volume are not counted") {
    od.enforcing_failure_percentage = 100;
    Fixture f(6, od);
    for (size_t i = 0; i < 6; ++i) Traffic(f, i, 49, failures[i] > 0 ? 49 : 0, f.now);
    EndInterval(f, f.now + 10s);
    CHECK(f.outlier().ejected_count() == 0);
  }
}

TEST_CASE("outlier: each host's enforcing_failure_percentage is its own draw") {
  // 19 hosts fail every request, enforcing 50%: each is ejected or not by its own chance, so
  // an interval ejects some and spares some (one draw for all would eject all or none).
  config::OutlierDetection od = IntervalDetectors();
  od.enforcing_success_rate = 0;
  od.enforcing_failure_percentage = 50;
  od.failure_percentage_minimum_hosts = 5;
  for (uint64_t seed : {uint64_t{1}, uint64_t{2}, uint64_t{1000}, ~uint64_t{0}}) {
    Fixture f(20, od);
    for (size_t i = 0; i < 19; ++i) Traffic(f, i, 50, 50, f.now);
    f.outlier().Report(f.host(19), 200, seed, f.now + 10s);  // ends the interval
    INFO("seed " << seed);
    CHECK(f.stats->outlier_detection_ejections_detected_failure_percentage == 19);
    CHECK(f.outlier().ejected_count() > 0);
    CHECK(f.outlier().ejected_count() < 19);
  }
}

TEST_CASE("outlier: without split_external_local_origin_errors local-origin errors count as 503/504") {
  config::OutlierDetection od = Consecutive5xx(3);
  od.consecutive_gateway_failure = 3;
  od.enforcing_consecutive_gateway_failure = 100;
  Fixture f(2, od);
  f.outlier().ReportLocalOrigin(f.host(0), false, kEnforce, f.now);  // connect failure: 503
  f.outlier().ReportLocalOrigin(f.host(0), true, kEnforce, f.now);   // timeout: 504
  CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now));
  f.Fail(0, 1, 502);
  CHECK(f.outlier().Ejected(f.host(0), f.now));
  CHECK(f.stats->outlier_detection_ejections_detected_consecutive_local_origin_failure == 0);
}

TEST_CASE("outlier: split_external_local_origin_errors counts local-origin errors apart") {
  config::OutlierDetection od = Consecutive5xx(3);
  od.split_external_local_origin_errors = true;
  od.consecutive_local_origin_failure = 2;
  SECTION("the upstream's 5xx and local-origin errors do not add up") {
    Fixture f(2, od);
    f.Fail(0, 2, 503);
    f.outlier().ReportLocalOrigin(f.host(0), false, kEnforce, f.now);
    CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now));
    // A response, even a 5xx, means the host could be reached: the local count starts again.
    f.outlier().ReportLocalOrigin(f.host(1), true, kEnforce, f.now);
    f.Fail(1, 1, 500);
    f.outlier().ReportLocalOrigin(f.host(1), true, kEnforce, f.now);
    CHECK_FALSE(f.outlier().Ejected(f.host(1), f.now));
    // Two local-origin errors in a row eject.
    f.outlier().ReportLocalOrigin(f.host(0), true, kEnforce, f.now);
    CHECK(f.outlier().Ejected(f.host(0), f.now));
    CHECK(f.stats->outlier_detection_ejections_detected_consecutive_local_origin_failure == 1);
    CHECK(f.stats->outlier_detection_ejections_enforced_consecutive_local_origin_failure == 1);
  }
  SECTION("enforcing_consecutive_local_origin_failure 0 detects without ejecting") {
    od.enforcing_consecutive_local_origin_failure = 0;
    Fixture f(2, od);
    for (int k = 0; k < 2; ++k) f.outlier().ReportLocalOrigin(f.host(0), false, kEnforce, f.now);
    CHECK_FALSE(f.outlier().Ejected(f.host(0), f.now));
    CHECK(f.stats->outlier_detection_ejections_detected_consecutive_local_origin_failure == 1);
  }
}

TEST_CASE("outlier: with split errors the interval detectors see local origin on their own") {
  config::OutlierDetection od = IntervalDetectors();
  od.split_external_local_origin_errors = true;
  od.consecutive_local_origin_failure = 1000000;
  od.enforcing_consecutive_local_origin_failure = 0;
  od.enforcing_success_rate = 100;
  od.enforcing_local_origin_success_rate = 100;
  Fixture f(5, od);
  // Host 0 answers every request it gets, but half of its attempts fail to connect: its
  // external success rate is 100%, its local-origin one 50%.
  for (size_t i = 0; i < 5; ++i) Traffic(f, i, 100, 0, f.now);
  for (int k = 0; k < 100; ++k) f.outlier().ReportLocalOrigin(f.host(0), false, kEnforce, f.now);
  EndInterval(f, f.now + 10s);
  CHECK(f.outlier().Ejected(f.host(0), f.now + 10s));
  CHECK(f.stats->outlier_detection_ejections_detected_success_rate == 0);
  CHECK(f.stats->outlier_detection_ejections_detected_local_origin_success_rate == 1);
  CHECK(f.stats->outlier_detection_ejections_enforced_local_origin_success_rate == 1);
}

TEST_CASE("outlier: ParseOutlierDetection reads the interval detectors' fields") {
  auto proto = testing_proto::OutlierDetectionProto();
  auto od = config::ParseOutlierDetection(proto);
  REQUIRE(od.ok());
  CHECK(od->interval == 2s);
  CHECK(od->success_rate_minimum_hosts == 3);
  CHECK(od->success_rate_request_volume == 20);
  CHECK(od->success_rate_stdev_factor == 1000);
  CHECK(od->enforcing_success_rate == 0);
  CHECK(od->failure_percentage_threshold == 60);
  CHECK(od->enforcing_failure_percentage == 100);
  CHECK(od->failure_percentage_minimum_hosts == 2);
  CHECK(od->failure_percentage_request_volume == 10);
  proto.mutable_failure_percentage_threshold()->set_value(101);
  CHECK(config::ParseOutlierDetection(proto).status().message() ==
        "outlier_detection.failure_percentage_threshold: 101 is over 100");
  CHECK(config::ParseOutlierDetection({})->enforcing_success_rate == 100);  // Envoy's default

  proto = testing_proto::OutlierDetectionProto();
  proto.set_split_external_local_origin_errors(true);
  proto.mutable_consecutive_local_origin_failure()->set_value(7);
  proto.mutable_enforcing_consecutive_local_origin_failure()->set_value(50);
  proto.mutable_enforcing_local_origin_success_rate()->set_value(0);
  proto.mutable_enforcing_failure_percentage_local_origin()->set_value(30);
  od = config::ParseOutlierDetection(proto);
  REQUIRE(od.ok());
  CHECK(od->split_external_local_origin_errors);
  CHECK(od->consecutive_local_origin_failure == 7);
  CHECK(od->enforcing_consecutive_local_origin_failure == 50);
  CHECK(od->enforcing_local_origin_success_rate == 0);
  CHECK(od->enforcing_failure_percentage_local_origin == 30);
  proto.mutable_enforcing_local_origin_success_rate()->set_value(101);
  CHECK(config::ParseOutlierDetection(proto).status().message() ==
        "outlier_detection.enforcing_local_origin_success_rate: 101 is over 100");
}


// Priority levels (Istio's locality failover): P0 on ports 1..4, P1 on ports 11..14.
struct Levels {
  explicit Levels(config::LbPolicy policy = config::LbPolicy::kRoundRobin, double panic = 0,
                  uint32_t p0_unhealthy = 0)
      : lb(policy, 2, Localities(p0_unhealthy), 1021, Od(panic)) {}
  static config::OutlierDetection Od(double panic) {
    config::OutlierDetection od = Consecutive5xx(1);
    od.healthy_panic_threshold = panic;
    return od;
  }
  static std::vector<config::Locality> Localities(uint32_t p0_unhealthy) {
    std::vector<config::Locality> localities(2);
    localities[0].zone = "r/a/";
    localities[0].endpoints = Endpoints(4);
    localities[0].unhealthy = p0_unhealthy;
    localities[1].zone = "r/b/";
    localities[1].priority = 1;
    for (config::Endpoint endpoint : Endpoints(4)) {
      endpoint.address.port(endpoint.address.port() + 10);
      localities[1].endpoints.push_back(endpoint);
    }
    return localities;
  }
  const Host& port(uint16_t p) const {
    for (const Host* host : lb.Hosts()) {
      if (host->address.port() == p) return *host;
    }
    FAIL("no host on port " << p);
    return *lb.Hosts()[0];
  }
  void Eject(std::initializer_list<uint16_t> ports) {
    for (uint16_t p : ports) lb.outlier()->Report(port(p), 503, kEnforce, now);
  }
  std::vector<uint32_t> Load() const { return lb.PriorityLoadAt(now).load; }
  // Picks per level (ports below 10: P0) and per port.
  std::map<uint16_t, int> Spread(int picks, bool hashed = false) const {
    std::mt19937_64 rng(11);
    std::map<uint16_t, int> counts;
    for (int k = 0; k < picks; ++k) {
      std::optional<uint64_t> hash;
      if (hashed) hash = upstream::Hash64("key-" + std::to_string(k));
      const Host* host = lb.Pick(rng, nullptr, hash, now);
      counts[host == nullptr ? 0 : host->address.port()]++;
    }
    return counts;
  }
  static int Level1(const std::map<uint16_t, int>& counts) {
    int n = 0;
    for (const auto& [p, count] : counts) n += p > 10 ? count : 0;
    return n;
  }

  LoadBalancer lb;
  OutlierDetector::Clock::time_point now = OutlierDetector::Clock::now();
};

TEST_CASE("priority: the first level takes all while healthy, then spills over as Envoy's does") {
  Levels f;
  CHECK(f.lb.Hosts().size() == 8);
  CHECK(f.port(12).priority == 1);
  CHECK(f.Load() == std::vector<uint32_t>{100, 0});
  CHECK(Levels::Level1(f.Spread(1000)) == 0);
  // 3 of 4 left: health min(100, 1.4 * 75) = 100, still all.
  f.Eject({1});
  CHECK(f.Load() == std::vector<uint32_t>{100, 0});
  // 2 of 4: health 70; the next level takes the 30 left.
  f.Eject({2});
  CHECK(f.Load() == std::vector<uint32_t>{70, 30});
  auto counts = f.Spread(20000);
  CHECK(Levels::Level1(counts) == Approx(6000).epsilon(0.05));
  CHECK(counts[1] + counts[2] == 0);  // the ejected ones take nothing
  // All of P0 out: everything to P1 (locality failover).
  f.Eject({3, 4});
  CHECK(f.Load() == std::vector<uint32_t>{0, 100});
  CHECK(Levels::Level1(f.Spread(1000)) == 1000);
  // Then P1 too, with panic mode off (Istio's default): no host.
  f.Eject({11, 12, 13, 14});
  CHECK(f.Spread(10) == std::map<uint16_t, int>{{0, 10}});
  // Hosts come back when their time is up, and P0 takes all again.
  f.now += 31s;
  CHECK(f.Load() == std::vector<uint32_t>{100, 0});
  CHECK(Levels::Level1(f.Spread(1000)) == 0);
}

TEST_CASE("priority: endpoints EDS calls unhealthy lower their level's health") {
  // 4 healthy of 6: health min(100, 1.4 * 66) = 93; P1 takes 7.
  Levels f(config::LbPolicy::kRoundRobin, 0, 2);
  CHECK(f.Load() == std::vector<uint32_t>{93, 7});
  CHECK(f.lb.Hosts().size() == 8);  // they take no traffic
}

TEST_CASE("priority: panic per level, and by host count when every level is in panic") {
  Levels f(config::LbPolicy::kRoundRobin, 50);
  // P0 with 1 of 4 (health 35), P1 whole (100): the health sums past 100, no panic.
  f.Eject({1, 2, 3});
  auto load = f.lb.PriorityLoadAt(f.now);
  CHECK(load.load == std::vector<uint32_t>{35, 65});
  CHECK(load.panic == std::vector<bool>{false, false});
  // P1 down to 1 of 4 too: health 35 + 35 = 70 < 100; both below 50%: total panic, load by
  // hosts, and ejected hosts take traffic again.
  f.Eject({11, 12, 13});
  load = f.lb.PriorityLoadAt(f.now);
  CHECK(load.load == std::vector<uint32_t>{50, 50});
  CHECK(load.panic == std::vector<bool>{true, true});
  auto counts = f.Spread(8000);
  CHECK(counts[1] > 0);
  CHECK(counts[11] > 0);
}

TEST_CASE("priority: ring hash and maglev keep a table per level; keys fail over and come back") {
  for (config::LbPolicy policy : {config::LbPolicy::kRingHash, config::LbPolicy::kMaglev}) {
    INFO((policy == config::LbPolicy::kMaglev ? "maglev" : "ring hash"));
    Levels f(policy);
    auto before = f.Spread(2000, true);
    CHECK(Levels::Level1(before) == 0);
    CHECK(before == f.Spread(2000, true));  // sticky
    f.Eject({1, 2, 3, 4});
    auto failed_over = f.Spread(2000, true);
    CHECK(Levels::Level1(failed_over) == 2000);
    CHECK(failed_over.size() == 4);  // spread over P1's hosts
    f.now += 31s;
    CHECK(f.Spread(2000, true) == before);
  }
}


TEST_CASE("priority: a locality losing hosts passes its share to the others (Envoy's availability)") {
  // One level, localities a (ports 1, 2) and b (ports 11, 12), weights 50/50.
  auto localities = [](uint32_t a_unhealthy) {
    std::vector<config::Locality> out(2);
    out[0] = {"r/a/", 50, Endpoints(2), 0, a_unhealthy};
    out[1] = {"r/b/", 50, {}, 0, 0};
    for (config::Endpoint endpoint : Endpoints(2)) {
      endpoint.address.port(endpoint.address.port() + 10);
      out[1].endpoints.push_back(endpoint);
    }
    return out;
  };
  auto share_of_a = [](const LoadBalancer& lb, OutlierDetector::Clock::time_point now) {
    std::mt19937_64 rng(3);
    int a = 0;
    for (int k = 0; k < 20000; ++k) a += lb.Pick(rng, nullptr, std::nullopt, now)->address.port() < 10;
    return a / 20000.0;
  };
  const auto now = OutlierDetector::Clock::now();
  LoadBalancer lb(config::LbPolicy::kRoundRobin, 2, localities(0), 1024, Levels::Od(0));
  CHECK(share_of_a(lb, now) == Approx(0.5).epsilon(0.03));
  // One of a's two out: availability min(1, 1.4 × 1/2) = 0.7, so a weighs 35 against 50.
  lb.outlier()->Report(*lb.Hosts()[0], 503, kEnforce, now);
  CHECK(share_of_a(lb, now) == Approx(35.0 / 85).epsilon(0.05));
  lb.outlier()->Report(*lb.Hosts()[1], 503, kEnforce, now);
  CHECK(share_of_a(lb, now) == 0);
  // Two of a's four endpoints unhealthy in EDS: the same 0.7, with nothing ejected.
  LoadBalancer unhealthy(config::LbPolicy::kRandom, 2, localities(2));
  CHECK(share_of_a(unhealthy, now) == Approx(35.0 / 85).epsilon(0.05));
}

}  // namespace
}  // namespace meshpilot::sidecar
