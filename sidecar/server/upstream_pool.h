#pragma once

// Upstream connections of one worker (so without locks), by cluster and endpoint:
// - HTTP/1.1: one request at a time per connection; idle ones are kept for reuse, and one the
//   peer closed meanwhile is noticed before reuse and dropped.
// - HTTP/2: connections shared by streams; a stream goes on the first connection that has
//   room under the peer's SETTINGS_MAX_CONCURRENT_STREAMS (and the cluster's
//   max_concurrent_streams) and has not received GOAWAY, else on a new connection.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "sidecar/config/cluster.h"
#include "sidecar/server/stream.h"
#include "sidecar/stats.h"

namespace meshpilot::sidecar::server {

class Http2Connection;

struct UpstreamConnection {
  UpstreamConnection(boost::asio::io_context& io, std::shared_ptr<ClusterStats> stats);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  boost::beast::tcp_stream stream;
  boost::beast::flat_buffer buffer;
  std::string out;  // request heads, reused from one request to the next
  std::shared_ptr<ClusterStats> stats;
  bool connected = false;
  bool reused = false;
  Clock::time_point released_at;  // when it last went idle
};

// Where one attempt goes.
struct UpstreamTarget {
  std::string_view cluster;  // the caller's, for as long as Open runs
  boost::asio::ip::tcp::endpoint peer;
  std::shared_ptr<ClusterStats> stats;
  uint32_t max_connections = 0;         // circuit breaker
  uint32_t max_concurrent_streams = 0;  // HTTP/2, 0: the peer's limit
  bool head_request = false;            // HTTP/1.1: the response has no body
};

// The protocol a request goes upstream in: the cluster's, or the downstream's.
Protocol UpstreamProtocolOf(const config::ClusterConfig& cluster, Protocol downstream);

// A pool's idle HTTP/1.1 connections to one endpoint of one cluster.
using IdleConnections = std::vector<std::unique_ptr<UpstreamConnection>>;

struct OpenedStream {
  std::unique_ptr<UpstreamStream> stream;
  StreamError error = StreamError::kNone;
  bool overflow = false;  // a new connection was needed and max_connections is reached
};

class UpstreamPool {
 public:
  explicit UpstreamPool(boost::asio::io_context& io) : io_(io) {}

  // A stream to `target` in `protocol`. HTTP/1.1 connects here (kConnectFailure on failure);
  // an HTTP/2 connection connects in the background and its streams fail with
  // kConnectFailure if it cannot.
  boost::asio::awaitable<OpenedStream> Open(const UpstreamTarget& target, Protocol protocol,
                                            Clock::time_point connect_deadline);

  // An HTTP/1.1 connection whose exchange completed cleanly, for the next request on `idle`
  // (the list it was opened for).
  void Release(IdleConnections& idle, std::unique_ptr<UpstreamConnection> connection);

 private:
  // By cluster and endpoint; looked up by a view of the cluster name, so a request copies no
  // string to find its connections.
  using Key = std::pair<std::string, boost::asio::ip::tcp::endpoint>;
  using KeyView = std::pair<std::string_view, boost::asio::ip::tcp::endpoint>;
  struct KeyLess {
    using is_transparent = void;
    static KeyView View(const Key& key) { return {key.first, key.second}; }
    static const KeyView& View(const KeyView& key) { return key; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const { return View(a) < View(b); }
  };
  template <class Value>
  using Map = std::map<Key, Value, KeyLess>;
  // The entry of `cluster` and `peer`, created empty if there is none.
  template <class Value>
  static Value& Entry(Map<Value>& map, std::string_view cluster,
                      const boost::asio::ip::tcp::endpoint& peer) {
    auto it = map.find(KeyView{cluster, peer});
    if (it == map.end()) it = map.emplace(Key{std::string(cluster), peer}, Value()).first;
    return it->second;
  }
  static constexpr size_t kMaxIdlePerEndpoint = 128;

  boost::asio::awaitable<OpenedStream> OpenHttp1(const UpstreamTarget& target,
                                                 Clock::time_point connect_deadline);
  OpenedStream OpenHttp2(const UpstreamTarget& target, Clock::time_point connect_deadline);

  boost::asio::io_context& io_;
  Map<IdleConnections> idle_;  // entries are never removed: streams hold on to theirs
  Map<std::vector<std::shared_ptr<Http2Connection>>> http2_;
};

}  // namespace meshpilot::sidecar::server
