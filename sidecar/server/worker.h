#pragma once

// One worker thread: its own io_context, its own SO_REUSEPORT acceptors for every listener
// that binds, its own upstream connection pool and random generator. Workers share nothing
// but the immutable ProxyConfig and atomic stats, so the data path takes no locks.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sidecar/proxy_config.h"
#include "sidecar/server/upstream_pool.h"

namespace meshpilot::sidecar::server {

// Where a downstream connection was going, as the data path needs it.
struct ConnectionInfo {
  boost::asio::ip::tcp::endpoint local;
  boost::asio::ip::tcp::endpoint remote;
  boost::asio::ip::tcp::endpoint destination;  // original destination, or `local`
  bool redirected = false;                     // destination came from SO_ORIGINAL_DST
  // From the listener's tls_inspector: a ClientHello's SNI (lower-case) and ALPN.
  bool tls = false;
  std::string server_name;
  std::vector<std::string> application_protocols;
  bool tls_terminated = false;  // the filter chain's DownstreamTlsContext did the handshake
  // The client's certificate (mTLS), for RBAC's `authenticated` principals.
  std::shared_ptr<const config::PeerCertificate> peer_certificate;
};

class Worker {
 public:
  Worker(int index, ConfigStore& store);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void Start();
  // Stops accepting and ends the event loop (connections in flight are dropped).
  void Stop();
  // Opens acceptors for new listeners, closes those of removed ones (their connections in
  // flight carry on: the drain). Thread-safe: runs on the worker's thread.
  void ApplyListeners(std::shared_ptr<const ProxyConfig> config);
  // /drain_listeners: the listeners in scope (the INBOUND ones with `inbound_only`, else all)
  // drain: their connections are told at once and new ones drain from the start; their
  // acceptors close after `close_after` (0: at once; graceful: the drain time) and stay closed
  // through later LDS updates. Connections in flight finish.
  void Drain(bool inbound_only, std::chrono::milliseconds close_after);
  // On the worker's thread: whether an HTTP connection accepted with `config` for the listener
  // `name`, on the chain of `http`, drains (the listener was removed, its own settings or that
  // chain changed, or /drain_listeners covers it).
  bool ListenerDrained(const std::string& name, const config::ListenerConfig& config,
                       const config::HttpChain& http);

  // On the worker's thread: `drain` is called once, when the listener `name` that an HTTP
  // connection was accepted with (`config`, on the chain of `http`) is removed, or replaced
  // by a version without that chain or with other settings of its own (a version that only
  // adds, changes or removes other chains leaves it alone: Envoy's filter-chain-only update),
  // or /drain_listeners covers it, as Envoy's drain manager tells its connections (an HTTP/2
  // one starts its drain sequence then, not only at its next stream); until the watch is
  // destroyed.
  class DrainWatch {
   public:
    DrainWatch(Worker& worker, std::string listener,
               std::shared_ptr<const config::ListenerConfig> config,
               const config::HttpChain& http, std::function<void()> drain);
    ~DrainWatch();
    DrainWatch(const DrainWatch&) = delete;
    DrainWatch& operator=(const DrainWatch&) = delete;

   private:
    friend class Worker;
    Worker& worker_;
    std::string listener_;
    std::shared_ptr<const config::ListenerConfig> config_;
    const config::HttpChain& http_;
    std::function<void()> drain_;
  };

  boost::asio::io_context& io() { return io_; }
  ConfigStore& store() { return store_; }
  UpstreamPool& pool() { return pool_; }
  std::mt19937_64& rng() { return rng_; }
  int index() const { return index_; }

 private:
  struct Bound {
    boost::asio::ip::tcp::endpoint address;
    std::shared_ptr<boost::asio::ip::tcp::acceptor> acceptor;
    bool inbound = false;
  };
  // What /drain_listeners covers.
  enum class DrainScope { kNone, kInbound, kAll };
  bool InDrainScope(bool inbound) const {
    return drain_scope_ == DrainScope::kAll || (drain_scope_ == DrainScope::kInbound && inbound);
  }
  void Reconcile(const ProxyConfig& config);
  // Whether an HTTP connection of `config`'s chain of `http`, on the listener `name`, drains:
  // /drain_listeners covers it, or `current` (null: no new config) no longer has its listener
  // or that chain (ListenerConfig::Keeps).
  bool Drains(const ProxyConfig* current, const std::string& name,
              const config::ListenerConfig& config, const config::HttpChain& http) const;
  // Tells the watched connections that drain under `config` (Drains).
  void DrainConnections(const ProxyConfig* config);
  // Closes the acceptors of the listeners /drain_listeners covers.
  void CloseDrainedAcceptors();
  boost::asio::awaitable<void> AcceptLoop(std::shared_ptr<boost::asio::ip::tcp::acceptor> acceptor,
                                          std::string listener);
  boost::asio::awaitable<void> HandleConnection(boost::asio::ip::tcp::socket socket,
                                                std::string listener);
  // Once the worker has no connection left, returns the heap's free memory to the system
  // (after 200 ms without one): a burst of connections leaves malloc's arenas fragmented, with
  // megabytes free but resident.
  void ConnectionClosed();

  int index_;
  ConfigStore& store_;
  // An io_context whose handlers (the suspended coroutines of connections still open) can be
  // destroyed while the members declared after it, such as the pool their streams return
  // connections to, are still alive.
  class IoContext : public boost::asio::io_context {
   public:
    using boost::asio::io_context::io_context;
    void DestroyHandlers() { shutdown(); }
  };

  bool stopped_ = false;  // before io_: connections still end while their handlers are destroyed
  // One thread runs it, and other threads only post to it: the reactor need not lock a socket
  // for each operation (Asio's UNSAFE_IO hint; the scheduler and timers still lock).
  IoContext io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  UpstreamPool pool_;
  std::mt19937_64 rng_;
  std::map<std::string, Bound> bound_;
  bool bind_retry_pending_ = false;
  DrainScope drain_scope_ = DrainScope::kNone;
  bool drain_closed_ = false;  // the acceptors in drain scope are closed
  std::set<DrainWatch*> drain_watches_;
  int connections_ = 0;
  boost::asio::steady_timer trim_timer_{io_};
  bool trim_pending_ = false;
  std::thread thread_;
};

// SO_ORIGINAL_DST of an accepted socket (set by iptables REDIRECT), if any.
std::optional<boost::asio::ip::tcp::endpoint> OriginalDestination(boost::asio::ip::tcp::socket& s);

}  // namespace meshpilot::sidecar::server
