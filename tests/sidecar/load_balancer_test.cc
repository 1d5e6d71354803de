// Load balancer distributions over fixed seeds: exact for round robin, within tolerance for the
// random ones.

#include <catch2/catch.hpp>

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

TEST_CASE("lb: ring hash is sticky, weighted, and moves few keys when a host goes") {
  LoadBalancer lb(config::LbPolicy::kRingHash, 2,
                  {{"z", 0, {Ep(1), Ep(2), Ep(3, 2)}}}, 4096);
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
  // the remaining hosts gain points (and trade some keys between them), as in Envoy.
  LoadBalancer smaller(config::LbPolicy::kRingHash, 2, {{"z", 0, {Ep(1), Ep(3, 2)}}}, 4096);
  int moved = 0;
  for (int key = 0; key < 20000; ++key) {
    uint16_t port =
        smaller.Pick(rng, nullptr, upstream::Hash64("user-" + std::to_string(key)))->address.port();
    if (owner[key] != 2 && port != owner[key]) ++moved;
  }
  CHECK(moved < 20000 * 0.1);
}

TEST_CASE("lb: smooth weighted order scales down huge weights") {
  auto order = upstream::SmoothWeightedOrder({1000000, 1}, 100);
  CHECK(order.size() <= 101);
  CHECK(std::count(order.begin(), order.end(), 1u) == 1);
}

}  // namespace
}  // namespace meshpilot::sidecar
