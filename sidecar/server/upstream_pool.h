#pragma once

// Upstream HTTP/1.1 connections, pooled per worker (so without locks) by cluster and endpoint.
// An idle connection the peer has closed meanwhile is noticed before reuse and dropped.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "sidecar/stats.h"

namespace meshpilot::sidecar::server {

struct UpstreamConnection {
  UpstreamConnection(boost::asio::io_context& io, std::shared_ptr<ClusterStats> stats);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  boost::beast::tcp_stream stream;
  boost::beast::flat_buffer buffer;
  std::shared_ptr<ClusterStats> stats;
  bool connected = false;
  bool reused = false;
};

struct Acquired {
  std::unique_ptr<UpstreamConnection> connection;
  boost::system::error_code error;
  bool overflow = false;  // no idle connection and max_connections reached
};

class UpstreamPool {
 public:
  explicit UpstreamPool(boost::asio::io_context& io) : io_(io) {}

  boost::asio::awaitable<Acquired> Acquire(const std::string& cluster,
                                           const boost::asio::ip::tcp::endpoint& peer,
                                           std::shared_ptr<ClusterStats> stats,
                                           std::chrono::steady_clock::time_point connect_deadline,
                                           uint32_t max_connections);
  void Release(const std::string& cluster, const boost::asio::ip::tcp::endpoint& peer,
               std::unique_ptr<UpstreamConnection> connection);

 private:
  static constexpr size_t kMaxIdlePerEndpoint = 128;
  boost::asio::io_context& io_;
  std::map<std::pair<std::string, boost::asio::ip::tcp::endpoint>,
           std::vector<std::unique_ptr<UpstreamConnection>>>
      idle_;
};

}  // namespace meshpilot::sidecar::server
