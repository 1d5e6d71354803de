// Load balancer distributions over fixed seeds: exact for round robin, within tolerance for the
// random ones.

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>

#include "sidecar/upstream/load_balancer.h"

namespace meshpilot::sidecar {
namespace {

using upstream::LoadBalancer;

config::Endpoint Ep(uint16_t port, uint32_t weight = 1) {
  return config::Endpoint{
      boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("10.0.0.1"), port), weight};
}

std::map<uint16_t, int> Spread(const LoadBalancer& lb, int picks, uint64_t seed = 42) {
  std::mt19937_64 rng(seed);
  std::map<uint16_t, int> counts;
  for (int i = 0; i < picks; ++i) counts[lb.Pick(rng)->address.port()]++;
  return counts;
}

TEST_CASE("lb: round robin is exact and smooth with weights") {
  LoadBalancer lb(config::LbPolicy::kRoundRobin, 2, {{"z", 0, {Ep(1, 5), Ep(2, 1), Ep(3, 1)}}});
  auto counts = Spread(lb, 700);
  CHECK(counts[1] == 500);
  CHECK(counts[2] == 100);
  CHECK(counts[3] == 100);
  // Smooth: the heavy host is never picked 5 times in a row (nginx's cycle is a a b a c a a,
  // so at most 4 across the end of one cycle and the start of the next).
  std::mt19937_64 rng(1);
  int run = 0, longest = 0;
  for (int i = 0; i < 70; ++i) {
    run = lb.Pick(rng)->address.port() == 1 ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  CHECK(longest <= 4);
}

TEST_CASE("lb: random follows endpoint weights within 3%") {
  LoadBalancer lb(config::LbPolicy::kRandom, 2, {{"z", 0, {Ep(1, 3), Ep(2, 1)}}});
  auto counts = Spread(lb, 40000);
  CHECK(counts[1] == Approx(30000).epsilon(0.03));
  CHECK(counts[2] == Approx(10000).epsilon(0.03));
}

TEST_CASE("lb: locality weights split first, endpoint weights inside") {
  // Locality a gets 80%, b 20%; inside a, hosts 1 and 2 split 50/50.
  LoadBalancer lb(config::LbPolicy::kRandom, 2,
                  {{"a", 80, {Ep(1), Ep(2)}}, {"b", 20, {Ep(3, 7)}}});
  auto counts = Spread(lb, 40000);
  CHECK(counts[1] == Approx(16000).epsilon(0.05));
  CHECK(counts[2] == Approx(16000).epsilon(0.05));
  CHECK(counts[3] == Approx(8000).epsilon(0.05));
  LoadBalancer rr(config::LbPolicy::kRoundRobin, 2,
                  {{"a", 3, {Ep(1)}}, {"b", 1, {Ep(2)}}});
  auto exact = Spread(rr, 400);
  CHECK(exact[1] == 300);
  CHECK(exact[2] == 100);
}

TEST_CASE("lb: least request prefers the host with fewer active requests") {
  LoadBalancer lb(config::LbPolicy::kLeastRequest, 2, {{"z", 0, {Ep(1), Ep(2), Ep(3), Ep(4)}}});
  for (const upstream::Host* host : lb.Hosts()) {
    if (host->address.port() != 4) host->active_requests = 10;
  }
  auto counts = Spread(lb, 10000);
  // Host 4 wins whenever it is one of the two choices: 1 - (3/4)^2 = 43.75% of picks.
  CHECK(counts[4] == Approx(4375).epsilon(0.05));
  for (uint16_t port : {1, 2, 3}) CHECK(counts[port] == Approx(5625.0 / 3).epsilon(0.08));
}

TEST_CASE("lb: least request with equal load is uniform") {
  LoadBalancer lb(config::LbPolicy::kLeastRequest, 2, {{"z", 0, {Ep(1), Ep(2)}}});
  auto counts = Spread(lb, 20000, 7);
  CHECK(counts[1] == Approx(10000).epsilon(0.03));
}

TEST_CASE("lb: no hosts, and avoiding the previous host") {
  LoadBalancer empty(config::LbPolicy::kRoundRobin, 2, {});
  std::mt19937_64 rng(1);
  CHECK(empty.Pick(rng) == nullptr);
  LoadBalancer lb(config::LbPolicy::kRandom, 2, {{"z", 0, {Ep(1), Ep(2)}}});
  const upstream::Host* first = lb.Pick(rng);
  for (int i = 0; i < 100; ++i) CHECK(lb.Pick(rng, first) != first);
}

TEST_CASE("lb: ring hash and maglev are sticky, weighted, and move few keys when a host goes") {
  for (config::LbPolicy policy : {config::LbPolicy::kRingHash, config::LbPolicy::kMaglev}) {
    INFO((policy == config::LbPolicy::kMaglev ? "maglev" : "ring hash"));
    LoadBalancer lb(policy, 2, {{"z", 0, {Ep(1), Ep(2), Ep(3, 2)}}}, 4093);  // a prime
    std::mt19937_64 rng(5);
    std::map<uint16_t, int> counts;
    std::map<int, uint16_t> owner;
    for (int key = 0; key < 20000; ++key) {
      uint64_t hash = upstream::Hash64("user-" + std::to_string(key));
      uint16_t port = lb.Pick(rng, nullptr, hash)->address.port();
      CHECK(lb.Pick(rng, nullptr, hash)->address.port() == port);  // sticky
      owner[key] = port;
      counts[port]++;
    }
    CHECK(counts[1] == Approx(5000).epsilon(0.15));
    CHECK(counts[3] == Approx(10000).epsilon(0.15));
    // Without host 2, its keys move, and few others: the ring is rescaled to the same size, so
    // the remaining hosts gain points (and trade some keys between them), as in Envoy; the
    // Maglev table gives host 2's slots away and moves a few others.
    LoadBalancer smaller(policy, 2, {{"z", 0, {Ep(1), Ep(3, 2)}}}, 4093);
    int moved = 0;
    for (int key = 0; key < 20000; ++key) {
      uint16_t port =
          smaller.Pick(rng, nullptr, upstream::Hash64("user-" + std::to_string(key)))->address.port();
      if (owner[key] != 2 && port != owner[key]) ++moved;
    }
    CHECK(moved < 20000 * 0.1);
  }
}

TEST_CASE("lb: ring hash and maglev place hosts as Envoy's do (Envoy's own test vectors)") {
  // Envoy's RingHashLoadBalancerTest.Basic and MaglevLoadBalancerTest.Basic: hosts
  // 127.0.0.1:90..95, a ring of at least 12 points, a table of 7 slots.
  std::vector<config::Endpoint> hosts;
  for (uint16_t port = 90; port <= 95; ++port) {
    hosts.push_back({boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                                                    port)});
  }
  std::mt19937_64 rng(1);
  LoadBalancer ring(config::LbPolicy::kRingHash, 2, {{"z", 0, hosts}}, 12);
  auto on_ring = [&](uint64_t hash) { return ring.Pick(rng, nullptr, hash)->address.port(); };
  // The ring's points, in order, and whose they are.
  const std::pair<uint64_t, uint16_t> points[] = {
      {833437586790550860ULL, 94},   {928266305478181108ULL, 92},
      {1033482794131418490ULL, 90},  {3551244743356806947ULL, 95},
      {3851675632748031481ULL, 93},  {5583722120771150861ULL, 91},
      {6311230543546372928ULL, 91},  {7700377290971790572ULL, 93},
      {13144177310400110813ULL, 95}, {13444792449719432967ULL, 92},
      {15516499411664133160ULL, 94}, {16117243373044804889ULL, 90}};
  for (const auto& [point, port] : points) {
    CHECK(on_ring(point) == port);      // a point is its own host's
    CHECK(on_ring(point - 1) == port);  // and so is what comes just before it
  }
  CHECK(on_ring(0) == 94);
  CHECK(on_ring(std::numeric_limits<uint64_t>::max()) == 94);  // past the last: the first
  CHECK(on_ring(3551244743356806948ULL) == 93);

  LoadBalancer maglev(config::LbPolicy::kMaglev, 2, {{"z", 0, hosts}}, 7);
  const uint16_t table[] = {92, 94, 90, 91, 95, 90, 93};
  for (uint64_t hash = 0; hash < 21; ++hash) {
    CHECK(maglev.Pick(rng, nullptr, hash)->address.port() == table[hash % 7]);
  }
}

TEST_CASE("lb: slow start weight follows Envoy's formula") {
  using std::chrono::milliseconds;
  const upstream::Clock::time_point t0;
  config::SlowStart linear{milliseconds(10000), 1.0, 10};
  CHECK(upstream::SlowStartWeight(4, linear, t0, t0) == Approx(0.4));  // min_weight_percent
  CHECK(upstream::SlowStartWeight(4, linear, t0, t0 + milliseconds(5000)) == Approx(2));
  CHECK(upstream::SlowStartWeight(4, linear, t0, t0 + milliseconds(10000)) == 4);
  config::SlowStart aggressive{milliseconds(10000), 2.0, 0};
  CHECK(upstream::SlowStartWeight(1, aggressive, t0, t0 + milliseconds(2500)) == Approx(0.5));
  // max(elapsed, 1 ms): never zero, even without a minimum.
  CHECK(upstream::SlowStartWeight(1, aggressive, t0, t0) == Approx(std::sqrt(0.0001)));
}

// Picks at `at`: round robin is exact within a step, random ones within tolerance.
std::map<uint16_t, int> SpreadAt(const LoadBalancer& lb, int picks, upstream::Clock::time_point at,
                                 uint64_t seed = 42) {
  std::mt19937_64 rng(seed);
  std::map<uint16_t, int> counts;
  for (int i = 0; i < picks; ++i) counts[lb.Pick(rng, nullptr, std::nullopt, at)->address.port()]++;
  return counts;
}

TEST_CASE("lb: slow start ramps a new host up over the window, round robin and least request") {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  const upstream::Clock::time_point now = upstream::Clock::now();
  upstream::SlowStartHosts slow_start{config::SlowStart{seconds(10), 1.0, 10}, now, {}};
  // Hosts 1 and 2 joined an hour ago; host 3 joins now (it is not listed).
  slow_start.joined[Ep(1).address] = now - std::chrono::hours(1);
  slow_start.joined[Ep(2).address] = now - std::chrono::hours(1);
  for (config::LbPolicy policy : {config::LbPolicy::kRoundRobin, config::LbPolicy::kLeastRequest}) {
    LoadBalancer lb(policy, 2, {{"z", 0, {Ep(1), Ep(2), Ep(3)}}}, 1024, std::nullopt, nullptr,
                    slow_start);
    // At 1 s, host 3 weighs ~0.1 (its step's middle: 1.09 s) against 1 and 1: ~5% of picks.
    auto early = SpreadAt(lb, 20000, now + seconds(1));
    CHECK(early[3] == Approx(20000 * 0.109 / 2.109).epsilon(0.15));
    CHECK(early[1] == Approx(early[2]).epsilon(0.05));
    // At 5 s, ~0.5: 20%.
    auto middle = SpreadAt(lb, 20000, now + seconds(5));
    CHECK(middle[3] == Approx(20000 * 0.5 / 2.5).epsilon(0.1));
    // Past the window, an equal share.
    auto after = SpreadAt(lb, 30000, now + seconds(11));
    CHECK(after[3] == Approx(10000).epsilon(0.05));
  }
  // Without slow start, the new host gets its share at once.
  LoadBalancer plain(config::LbPolicy::kRoundRobin, 2, {{"z", 0, {Ep(1), Ep(2), Ep(3)}}});
  CHECK(SpreadAt(plain, 3000, now)[3] == 1000);
}

TEST_CASE("lb: slow start scales weights, and hosts that joined together share equally") {
  using std::chrono::seconds;
  const upstream::Clock::time_point now = upstream::Clock::now();
  // All new: all scaled alike, so the weights keep their proportions.
  upstream::SlowStartHosts slow_start{config::SlowStart{seconds(30), 1.0, 10}, now, {}};
  LoadBalancer lb(config::LbPolicy::kRoundRobin, 2, {{"z", 0, {Ep(1, 3), Ep(2, 1)}}}, 1024,
                  std::nullopt, nullptr, slow_start);
  auto counts = SpreadAt(lb, 4000, now + seconds(2));
  CHECK(counts[1] == Approx(3000).epsilon(0.02));
  CHECK(counts[2] == Approx(1000).epsilon(0.05));
}

TEST_CASE("lb: smooth weighted order scales down huge weights") {
  auto order = upstream::SmoothWeightedOrder({1000000, 1}, 100);
  CHECK(order.size() <= 101);
  CHECK(std::count(order.begin(), order.end(), 1u) == 1);
}

}  // namespace
}  // namespace meshpilot::sidecar
