#include "sidecar/server/worker.h"

#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "sidecar/filters/http_inspector.h"
#include "sidecar/filters/tls_inspector.h"
#include "sidecar/heap.h"
#include "sidecar/server/connection.h"
#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

std::optional<tcp::endpoint> OriginalDestination(tcp::socket& socket) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  const int fd = socket.native_handle();
  if (::getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &storage, &length) == 0 &&
      storage.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    return tcp::endpoint(asio::ip::address_v4(ntohl(in->sin_addr.s_addr)), ntohs(in->sin_port));
  }
  length = sizeof(storage);
  if (::getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &storage, &length) == 0 &&
      storage.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), in6->sin6_addr.s6_addr, bytes.size());
    return tcp::endpoint(asio::ip::address_v6(bytes), ntohs(in6->sin6_port));
  }
  return std::nullopt;
}

namespace {

// A downstream TLS handshake not done by then closes the connection (Envoy has no default
// limit; a client that never finishes must not hold a connection forever).
constexpr auto kTlsHandshakeTimeout = std::chrono::seconds(15);

// SO_RCVLOWAT: epoll reports the socket readable only with at least `bytes` to read (or at its
// end, or on an error).
void SetReceiveLowWatermark(int fd, size_t bytes) {
  const int value = static_cast<int>(bytes);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &value, sizeof(value));
}

// The listener filters that read: envoy.filters.listener.tls_inspector and http_inspector
// (each if `listener` runs it for this connection's port). They peek (MSG_PEEK: the bytes stay
// for the filter chain) at the connection's first bytes until the tls_inspector has a whole
// ClientHello or knows it is not TLS and the http_inspector, on a connection that is not TLS,
// knows whether it is HTTP; or `listener`'s listener_filters_timeout passes. Returns false when
// the connection is to be closed: the peer left, the ClientHello is too large, or the time ran
// out without continue_on_listener_filters_timeout (Envoy's rules).
asio::awaitable<bool> InspectConnection(tcp::socket& socket, const config::ListenerConfig& listener,
                                        ListenerStats& stats, ConnectionInfo& info) {
  using Result = filters::TlsInspection::Result;
  bool tls_pending = listener.tls_inspector.RunsFor(info.destination.port());
  bool http_pending = listener.http_inspector.RunsFor(info.destination.port());
  if (!tls_pending && !http_pending) co_return true;
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer deadline(socket.get_executor());
  if (listener.listener_filters_timeout.count() > 0) {
    deadline.expires_after(listener.listener_filters_timeout);
    // The handler may run after this frame is gone (cancelled late): it touches the socket only
    // while `timed_out`, owned here, lives.
    deadline.async_wait([weak = std::weak_ptr<bool>(timed_out), &socket](
                            const boost::system::error_code& ec) {
      auto flag = weak.lock();
      if (ec || !flag) return;
      *flag = true;
      socket.cancel();
    });
  }
  // Room for the largest ClientHello and the headers of the records it may span.
  std::vector<uint8_t> buffer(tls_pending ? filters::kMaxClientHelloSize + 1024
                                          : filters::kMaxHttpInspectSize);
  const int fd = socket.native_handle();
  size_t seen = 0;  // bytes peeked so far
  bool keep = true;
  for (;;) {
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
        (n > 0 && static_cast<size_t>(n) == seen)) {
      // Closed or reset before the listener filters were done; woken with no new bytes (see
      // below), the peer has shut its side down.
      keep = false;
      break;
    }
    if (n > 0) {
      seen = static_cast<size_t>(n);
      const std::span<const uint8_t> peeked(buffer.data(), seen);
      if (tls_pending) {
        filters::TlsInspection inspection = filters::InspectClientHello(peeked);
        if (inspection.result == Result::kClientHello) {
          info.tls = true;
          info.server_name = std::move(inspection.server_name);
          info.application_protocols = std::move(inspection.alpn);
          stats.tls_found.fetch_add(1, std::memory_order_relaxed);
          if (!info.server_name.empty()) stats.sni_found.fetch_add(1, std::memory_order_relaxed);
          break;  // the http_inspector leaves TLS alone
        }
        if (inspection.result == Result::kNotTls) {
          stats.tls_not_found.fetch_add(1, std::memory_order_relaxed);
          tls_pending = false;
        } else if (inspection.result == Result::kTooLarge || seen == buffer.size()) {
          stats.client_hello_too_large.fetch_add(1, std::memory_order_relaxed);
          keep = false;
          break;
        }
      }
      if (http_pending && !tls_pending) {
        const filters::HttpInspection found = filters::InspectHttp(peeked);
        if (found != filters::HttpInspection::kNeedMoreData) {
          http_pending = false;
          std::atomic<uint64_t>& counter =
              found == filters::HttpInspection::kHttp10   ? stats.http10_found
              : found == filters::HttpInspection::kHttp11 ? stats.http11_found
              : found == filters::HttpInspection::kHttp2  ? stats.http2_found
                                                          : stats.http_not_found;
          counter.fetch_add(1, std::memory_order_relaxed);
          if (found != filters::HttpInspection::kNotHttp) {
            info.application_protocols = {std::string(filters::ApplicationProtocolOf(found))};
          }
        }
      }
      if (!tls_pending && !http_pending) break;
      // The peeked bytes keep the socket readable: ask to be woken only once more arrive.
      SetReceiveLowWatermark(fd, seen + 1);
    }
    boost::system::error_code ec;
    co_await socket.async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
    if (*timed_out) {
      keep = listener.continue_on_listener_filters_timeout;
      break;
    }
    if (ec) {
      keep = false;
      break;
    }
  }
  if (seen > 0) SetReceiveLowWatermark(fd, 1);
  timed_out.reset();
  deadline.cancel();
  co_return keep;
}

}  // namespace

Worker::Worker(int index, ConfigStore& store)
    : index_(index),
      store_(store),
      work_(asio::make_work_guard(io_)),
      pool_(io_),
      rng_(std::random_device{}() ^ (static_cast<uint64_t>(index) << 32)) {}

Worker::~Worker() {
  Stop();
  io_.DestroyHandlers();  // while pool_ and the timers are alive
}

void Worker::Start() {
  thread_ = std::thread([this] { io_.run(); });
}

void Worker::Stop() {
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    for (auto& [name, bound] : bound_) bound.acceptor->close();
    bound_.clear();
  });
  work_.reset();
  io_.stop();
  thread_.join();
  stopped_ = true;
}

void Worker::ApplyListeners(std::shared_ptr<const ProxyConfig> config) {
  asio::post(io_, [this, config = std::move(config)] { Reconcile(*config); });
}

void Worker::Drain(bool inbound_only, std::chrono::milliseconds close_after) {
  asio::post(io_, [this, inbound_only, close_after] {
    const DrainScope scope = inbound_only ? DrainScope::kInbound : DrainScope::kAll;
    if (drain_scope_ != DrainScope::kAll) drain_scope_ = scope;
    DrainConnections(nullptr);
    if (close_after.count() <= 0) {
      CloseDrainedAcceptors();
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(io_, close_after);
    timer->async_wait([this, timer](const boost::system::error_code& ec) {
      if (!ec) CloseDrainedAcceptors();
    });
  });
}

void Worker::CloseDrainedAcceptors() {
  drain_closed_ = true;
  for (auto it = bound_.begin(); it != bound_.end();) {
    if (InDrainScope(it->second.inbound)) {
      if (index_ == 0) spdlog::info("listener {}: closed by /drain_listeners", it->first);
      it->second.acceptor->close();
      it = bound_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Worker::ListenerDrained(const std::string& name, const config::ListenerConfig& config,
                             const config::HttpChain& http) {
  return Drains(store_.Load().get(), name, config, http);
}

bool Worker::Drains(const ProxyConfig* current, const std::string& name,
                    const config::ListenerConfig& config, const config::HttpChain& http) const {
  if (InDrainScope(config.inbound)) return true;
  if (current == nullptr) return false;
  const ListenerEntry* listener = current->FindListener(name);
  return listener == nullptr || !listener->config->Keeps(config, http);
}

Worker::DrainWatch::DrainWatch(Worker& worker, std::string listener,
                               std::shared_ptr<const config::ListenerConfig> config,
                               const config::HttpChain& http, std::function<void()> drain)
    : worker_(worker),
      listener_(std::move(listener)),
      config_(std::move(config)),
      http_(http),
      drain_(std::move(drain)) {
  worker_.drain_watches_.insert(this);
}

Worker::DrainWatch::~DrainWatch() { worker_.drain_watches_.erase(this); }

void Worker::DrainConnections(const ProxyConfig* config) {
  std::vector<DrainWatch*> draining;
  for (DrainWatch* watch : drain_watches_) {
    if (Drains(config, watch->listener_, *watch->config_, watch->http_)) draining.push_back(watch);
  }
  for (DrainWatch* watch : draining) {
    // Told once: out of the set before its callback runs (which may end the connection).
    drain_watches_.erase(watch);
    if (watch->drain_) std::exchange(watch->drain_, nullptr)();
  }
}

void Worker::Reconcile(const ProxyConfig& config) {
  DrainConnections(&config);
  for (auto it = bound_.begin(); it != bound_.end();) {
    const ListenerEntry* listener = config.FindListener(it->first);
    if (listener == nullptr || !listener->config->bind_to_port ||
        listener->config->address != it->second.address) {
      if (index_ == 0) spdlog::info("listener {}: closed, draining", it->first);
      it->second.acceptor->close();
      it = bound_.erase(it);
    } else {
      ++it;
    }
  }
  bool retry_bind = false;
  for (const auto& [name, listener] : config.listeners) {
    if (!listener.config->bind_to_port || bound_.contains(name)) continue;
    if (drain_closed_ && InDrainScope(listener.config->inbound)) continue;
    auto acceptor = std::make_shared<tcp::acceptor>(io_);
    boost::system::error_code ec;
    const tcp::endpoint& address = listener.config->address;
    acceptor->open(address.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) {
      int one = 1;
      if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        ec = boost::system::error_code(errno, boost::system::system_category());
      }
    }
    if (!ec) acceptor->bind(address, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      listener.stats->bind_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("listener {}: cannot listen on {}:{}: {}", name,
                    address.address().to_string(), address.port(), ec.message());
      retry_bind = true;
      continue;
    }
    if (index_ == 0) {
      spdlog::info("listener {}: listening on {}:{}", name, address.address().to_string(),
                   address.port());
    }
    bound_[name] = Bound{address, acceptor, listener.config->inbound};
    asio::co_spawn(io_, AcceptLoop(acceptor, name), asio::detached);
  }
  if (retry_bind && !bind_retry_pending_) {
    // The port may free up (another process exits): try again with whatever config is then
    // current, until every listener is bound or removed.
    bind_retry_pending_ = true;
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::seconds(1));
    timer->async_wait([this, timer](const boost::system::error_code& ec) {
      bind_retry_pending_ = false;
      if (!ec) Reconcile(*store_.Load());
    });
  }
}

asio::awaitable<void> Worker::AcceptLoop(std::shared_ptr<tcp::acceptor> acceptor,
                                         std::string listener) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
    if (ec) {
      // Out of descriptors and the like: back off a little instead of spinning.
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(io_, HandleConnection(std::move(socket), listener), asio::detached);
  }
}

void Worker::ConnectionClosed() {
  if (--connections_ > 0 || trim_pending_ || stopped_) return;
  trim_pending_ = true;
  trim_timer_.expires_after(std::chrono::milliseconds(200));
  trim_timer_.async_wait([this](const boost::system::error_code& ec) {
    trim_pending_ = false;
    if (ec || connections_ > 0) return;
    pool_.TrimIdleAfterBurst();
    ReleaseFreeMemory();
  });
}

asio::awaitable<void> Worker::HandleConnection(tcp::socket socket, std::string name) {
  ++connections_;
  struct Closed {
    Worker* worker;
    ~Closed() { worker->ConnectionClosed(); }
  } closed{this};
  std::shared_ptr<const ProxyConfig> config = store_.Load();
  const ListenerEntry* accepting = config->FindListener(name);
  if (accepting == nullptr) co_return;
  boost::system::error_code ec;
  ConnectionInfo info;
  info.local = socket.local_endpoint(ec);
  info.remote = socket.remote_endpoint(ec);
  if (ec) co_return;
  info.destination = info.local;
  if (auto original = OriginalDestination(socket); original && *original != info.local) {
    info.destination = *original;
    info.redirected = true;
  }
  accepting->stats->downstream_cx_total.fetch_add(1, std::memory_order_relaxed);
  std::string owner_name = name;
  ListenerEntry owner = *accepting;
  if (accepting->config->use_original_dst) {
    // virtualOutbound: hand the connection to the listener of its original destination.
    if (const ListenerEntry* target = config->ListenerForDestination(info.destination)) {
      owner = *target;
      owner_name = target->config->name;
      owner.stats->downstream_cx_total.fetch_add(1, std::memory_order_relaxed);
    }
  }
  const bool keep = co_await InspectConnection(socket, *owner.config, *owner.stats, info);
  if (!keep) co_return;
  const config::FilterChain* chain = owner.config->ChainFor(
      {.destination = info.destination,
       .source = info.remote,
       .server_name = info.server_name,
       .transport_protocol = info.tls ? "tls" : "raw_buffer",
       .application_protocols = &info.application_protocols});
  if (chain == nullptr) {
    owner.stats->no_filter_chain_match.fetch_add(1, std::memory_order_relaxed);
    co_return;
  }
  owner.stats->downstream_cx_active.fetch_add(1, std::memory_order_relaxed);
  struct ActiveGuard {
    std::shared_ptr<ListenerStats> stats;
    ~ActiveGuard() { stats->downstream_cx_active.fetch_sub(1, std::memory_order_relaxed); }
  } guard{owner.stats};
  Transport transport(std::move(socket));
  if (chain->tls) {
    const std::shared_ptr<const config::TlsContext> context = chain->tls->Current();
    const bool handshaken =
        co_await transport.Handshake(*context, Transport::Role::kServer, owner.stats->ssl,
                                     std::chrono::steady_clock::now() + kTlsHandshakeTimeout);
    if (!handshaken) co_return;
    info.tls_terminated = true;
    info.peer_certificate = transport.PeerCertificate();
  }
  // After the handshake, as Envoy's network filters: `authenticated` principals need it.
  if (!chain->rbac.empty()) {
    filters::RbacRequest request{info.remote, info.destination, std::nullopt, {},
                                 info.server_name, info.tls_terminated,
                                 info.peer_certificate.get()};
    for (const auto& rbac : chain->rbac) {
      if (!rbac->Evaluate(request).allowed) {
        owner.stats->rbac_denied.fetch_add(1, std::memory_order_relaxed);
        co_return;  // Envoy's network RBAC closes the connection
      }
    }
    owner.stats->rbac_allowed.fetch_add(1, std::memory_order_relaxed);
  }
  if (const auto* http = std::get_if<config::HttpChain>(&chain->filter)) {
    co_await RunHttpSession(*this, std::move(transport), info, owner_name, owner, *http);
  } else {
    co_await RunTcpProxy(*this, std::move(transport), info, config,
                         std::get<config::TcpProxyChain>(chain->filter), owner.config->inbound);
  }
}

}  // namespace meshpilot::sidecar::server
