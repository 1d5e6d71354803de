// The HTTP/1.1 connection manager and router filter on Boost.Beast: keep-alive, chunked and
// streamed bodies both ways, virtual host and route selection, header mutations, rewrites,
// redirects, direct responses, timeouts, retries, and Envoy's local replies.
//
// Bodies are streamed through a fixed buffer. A request body up to kRetryBufferLimit with a
// known length is held so the request can be retried; a larger or chunked one is streamed and
// can only be retried before any of it is sent (connect failures).

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <limits>
#include <optional>
#include <string>

#include "sidecar/router/headers.h"
#include "sidecar/router/retry.h"
#include "sidecar/router/route_match.h"
#include "sidecar/server/connection.h"
#include "spdlog/spdlog.h"

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::redirect_error;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(300);
constexpr size_t kRetryBufferLimit = 64 * 1024;
// Bodies are streamed, so no limit; not boost::none: Boost 1.74's parser compares the content
// length against an empty optional and reports body_limit for every body.
constexpr uint64_t kNoBodyLimit = std::numeric_limits<uint64_t>::max();
constexpr char kConnectFailure[] =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
constexpr char kOverflow[] =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";
constexpr char kRbacDenied[] = "RBAC: access denied";
constexpr char kConnectionTermination[] =
    "upstream connect error or disconnect/reset before headers. reset reason: connection "
    "termination";

std::string_view SV(beast::string_view s) { return std::string_view(s.data(), s.size()); }

// Copies one message's body from `in` to `out` through a fixed buffer, writing the header
// first (Beast's relay pattern): neither side's body is ever held whole.
template <bool isRequest, class In, class Out>
asio::awaitable<boost::system::error_code> Relay(In& in, beast::flat_buffer& in_buffer,
                                                 http::parser<isRequest, http::buffer_body>& parser,
                                                 Out& out) {
  char buffer[16384];
  http::serializer<isRequest, http::buffer_body> serializer{parser.get()};
  boost::system::error_code ec;
  do {
    if (!parser.is_done()) {
      parser.get().body().data = buffer;
      parser.get().body().size = sizeof(buffer);
      co_await http::async_read(in, in_buffer, parser, redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return ec;
      parser.get().body().size = sizeof(buffer) - parser.get().body().size;
      parser.get().body().data = buffer;
      parser.get().body().more = !parser.is_done();
    } else {
      parser.get().body().data = nullptr;
      parser.get().body().size = 0;
      parser.get().body().more = false;
    }
    co_await http::async_write(out, serializer, redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return ec;
  } while (!parser.is_done() && !serializer.is_done());
  co_return ec;
}

class HttpSession {
 public:
  HttpSession(Worker& worker, tcp::socket socket, ConnectionInfo info, std::string listener_name,
              ListenerEntry listener, const config::HttpChain& chain)
      : worker_(worker),
        down_(std::move(socket)),
        info_(info),
        listener_name_(std::move(listener_name)),
        listener_(std::move(listener)),
        chain_(chain) {}

  asio::awaitable<void> Run() {
    for (;;) {
      http::request_parser<http::buffer_body> parser;
      parser.body_limit(kNoBodyLimit);
      parser.header_limit(64 * 1024);
      down_.expires_after(kIdleTimeout);
      boost::system::error_code ec;
      co_await http::async_read_header(down_, buffer_, parser, redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
            ec != http::error::end_of_stream && ec != http::error::partial_message) {
          co_await LocalReply(11, 400, "", false, {});
        }
        break;
      }
      down_.expires_never();
      if (!co_await Serve(parser)) break;
    }
    boost::system::error_code ignored;
    down_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

 private:
  // The header mutations that apply to a request, most specific first.
  struct Mutations {
    // route, weighted cluster, virtual host, route config, and meshproxy's own.
    const config::HeaderMutations* levels[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
  };

  asio::awaitable<bool> LocalReply(unsigned version, unsigned status, std::string body,
                                   bool keep_alive, Mutations response_mutations,
                                   std::string location = "") {
    http::response<http::string_body> response{static_cast<http::status>(status), version};
    if (!body.empty()) response.set(http::field::content_type, "text/plain");
    if (!location.empty()) response.set(http::field::location, location);
    for (const auto* m : response_mutations.levels) {
      if (m != nullptr) router::ApplyHeaderMutations(*m, response);
    }
    response.set(http::field::server, "envoy");
    response.body() = std::move(body);
    response.keep_alive(keep_alive);
    response.prepare_payload();
    CountDownstream(status);
    boost::system::error_code ec;
    co_await http::async_write(down_, response, redirect_error(use_awaitable, ec));
    co_return keep_alive && !ec;
  }

  asio::awaitable<bool> Overloaded(unsigned version, bool keep_alive, Mutations mutations) {
    const config::HeaderMutations overloaded{{{"x-envoy-overloaded", "true",
                                               config::HeaderToAdd::Action::kOverwriteIfExistsOrAdd}},
                                             {}};
    mutations.levels[4] = &overloaded;
    co_return co_await LocalReply(version, 503, kOverflow, keep_alive, mutations);
  }

  void CountDownstream(unsigned status) {
    if (status >= 100 && status < 600) {
      listener_.stats->downstream_rq_class[status / 100].fetch_add(1, std::memory_order_relaxed);
    }
  }

  asio::awaitable<void> Sleep(std::chrono::milliseconds delay) {
    asio::steady_timer timer(worker_.io(), delay);
    boost::system::error_code ec;
    co_await timer.async_wait(redirect_error(use_awaitable, ec));
  }

  asio::awaitable<bool> Serve(http::request_parser<http::buffer_body>& parser) {
    auto& request = parser.get();
    const unsigned version = request.version();
    std::shared_ptr<const ProxyConfig> config = worker_.store().Load();
    listener_.stats->downstream_rq_total.fetch_add(1, std::memory_order_relaxed);
    // A listener that was removed or replaced drains: this request is served, then the
    // connection closes.
    const ListenerEntry* current = config->FindListener(listener_name_);
    bool keep_alive = request.keep_alive() && current != nullptr &&
                      current->config == listener_.config && !worker_.draining();

    if (beast::iequals(request[http::field::expect], "100-continue")) {
      request.erase(http::field::expect);
      if (!parser.is_done()) {
        static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
        boost::system::error_code ec;
        co_await asio::async_write(down_, asio::buffer(kContinue, sizeof(kContinue) - 1),
                                   redirect_error(use_awaitable, ec));
        if (ec) co_return false;
      }
    }
    // A local reply that leaves the request body unread must close the connection.
    auto local_keep_alive = [&] { return keep_alive && parser.is_done(); };

    const std::string host(SV(request[http::field::host]));
    const std::string path(SV(request.target()));
    const std::string method(SV(request.method_string()));
    auto headers = [&](std::string_view name) -> std::optional<std::string_view> {
      if (name == ":authority") return std::string_view(host);
      if (name == ":path") return std::string_view(path);
      if (name == ":method") return std::string_view(method);
      if (name == ":scheme") return std::string_view("http");
      auto it = request.find(beast::string_view(name.data(), name.size()));
      if (it == request.end()) return std::nullopt;
      return SV(it->value());
    };
    if (!chain_.rbac.empty()) {
      // The RBAC filters run before the router (and so before route selection).
      filters::RbacRequest rbac_request{info_.remote, info_.destination, headers,
                                        router::PathOnly(path)};
      for (const auto& rbac : chain_.rbac) {
        if (!rbac->Evaluate(rbac_request).allowed) {
          listener_.stats->rbac_denied.fetch_add(1, std::memory_order_relaxed);
          co_return co_await LocalReply(version, 403, kRbacDenied, local_keep_alive(), {});
        }
      }
      listener_.stats->rbac_allowed.fetch_add(1, std::memory_order_relaxed);
    }
    const config::RouteTable* table = config->RoutesFor(chain_);
    const config::VirtualHost* vhost = table ? router::SelectVirtualHost(*table, host) : nullptr;
    const config::Route* route = vhost ? router::SelectRoute(*vhost, path, headers) : nullptr;
    if (route == nullptr) {
      listener_.stats->no_route.fetch_add(1, std::memory_order_relaxed);
      co_return co_await LocalReply(version, 404, "", local_keep_alive(), {});
    }
    Mutations response_mutations{{&route->response_headers, nullptr, &vhost->response_headers,
                                  &table->response_headers}};
    if (route->fault) {
      // The fault filter runs before the router: delay first, then abort.
      const config::Fault& fault = *route->fault;
      if (fault.delay && worker_.rng()() % 1000000 < fault.delay_per_million) {
        co_await Sleep(*fault.delay);
      }
      if ((fault.abort_http_status || fault.abort_grpc_status) &&
          worker_.rng()() % 1000000 < fault.abort_per_million) {
        if (fault.abort_grpc_status) {
          http::response<http::string_body> response{http::status::ok, version};
          response.set(http::field::content_type, "application/grpc");
          response.set("grpc-status", std::to_string(*fault.abort_grpc_status));
          response.set("grpc-message", "fault filter abort");
          response.keep_alive(local_keep_alive());
          response.prepare_payload();
          CountDownstream(200);
          boost::system::error_code ec;
          co_await http::async_write(down_, response, redirect_error(use_awaitable, ec));
          co_return !ec && local_keep_alive();
        }
        co_return co_await LocalReply(version, *fault.abort_http_status, "fault filter abort",
                                      local_keep_alive(), response_mutations);
      }
    }
    if (const auto* redirect = std::get_if<config::Redirect>(&route->action)) {
      co_return co_await LocalReply(
          version, redirect->status, "", local_keep_alive(), response_mutations,
          router::RedirectLocation(*redirect, route->match, "http", host, path));
    }
    if (const auto* direct = std::get_if<config::DirectResponse>(&route->action)) {
      co_return co_await LocalReply(version, direct->status, direct->body, local_keep_alive(),
                                    response_mutations);
    }
    const auto& action = std::get<config::RouteAction>(route->action);
    const config::WeightedCluster* weighted = nullptr;
    std::string cluster_name = action.cluster;
    if (!action.weighted.empty()) {
      weighted = &router::PickWeighted(action.weighted, action.total_weight, worker_.rng()());
      cluster_name = weighted->name;
      response_mutations.levels[1] = &weighted->response_headers;
    }
    const ClusterEntry* cluster = config->FindCluster(cluster_name);
    if (cluster == nullptr) {
      co_return co_await LocalReply(version, 503, "", local_keep_alive(), response_mutations);
    }
    ClusterStats& stats = *cluster->stats;
    const config::CircuitBreakers& breakers = cluster->config->circuit_breakers;
    // Circuit breaking (max_requests) across all workers, as Envoy's x-envoy-overloaded 503.
    if (stats.upstream_rq_active.fetch_add(1, std::memory_order_relaxed) >=
        static_cast<int64_t>(breakers.max_requests)) {
      stats.upstream_rq_active.fetch_sub(1, std::memory_order_relaxed);
      stats.upstream_rq_pending_overflow.fetch_add(1, std::memory_order_relaxed);
      co_return co_await Overloaded(version, local_keep_alive(), response_mutations);
    }
    struct ActiveGuard {
      ClusterStats& stats;
      ~ActiveGuard() { stats.upstream_rq_active.fetch_sub(1, std::memory_order_relaxed); }
    } active_request{stats};

    // Consistent hashing reads the request as the client sent it.
    const std::string source_ip = info_.remote.address().to_string();
    const std::optional<uint64_t> request_hash =
        action.hash_policies.empty()
            ? std::nullopt
            : router::RequestHash(action.hash_policies, path, headers, source_ip);
    // The request as it goes upstream.
    router::StripHopByHop(request);
    if (request.find("x-request-id") == request.end()) {
      request.set("x-request-id", router::NewRequestId(worker_.rng()));
    }
    if (request.find("x-forwarded-proto") == request.end()) request.set("x-forwarded-proto", "http");
    router::ApplyHeaderMutations(route->request_headers, request);
    if (weighted != nullptr) router::ApplyHeaderMutations(weighted->request_headers, request);
    router::ApplyHeaderMutations(vhost->request_headers, request);
    router::ApplyHeaderMutations(table->request_headers, request);
    if (std::string rewritten = router::RewritePath(route->match, action, path); rewritten != path) {
      request.set("x-envoy-original-path", path);
      request.target(rewritten);
    }
    if (!action.host_rewrite.empty()) request.set(http::field::host, action.host_rewrite);
    request.version(11);
    request.keep_alive(true);

    // Hold a small body so the request can be retried; stream anything else.
    const bool buffered = parser.is_done() ||
                          (parser.content_length() && *parser.content_length() <= kRetryBufferLimit);
    std::optional<http::request<http::string_body>> held;
    if (buffered) {
      std::string body;
      char chunk[8192];
      while (!parser.is_done()) {
        request.body().data = chunk;
        request.body().size = sizeof(chunk);
        boost::system::error_code ec;
        co_await http::async_read(down_, buffer_, parser, redirect_error(use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) co_return false;
        body.append(chunk, sizeof(chunk) - request.body().size);
      }
      held.emplace(std::move(request.base()), std::move(body));
      held->erase(http::field::transfer_encoding);
      held->prepare_payload();
    }

    const config::RetryPolicy* retry = action.retry ? &*action.retry : nullptr;
    uint32_t retries_left = retry ? retry->num_retries : 0;
    uint32_t retry_number = 0;
    const Clock::time_point start = Clock::now();
    const std::optional<Clock::time_point> deadline =
        action.timeout.count() > 0 ? std::optional(start + action.timeout) : std::nullopt;
    const upstream::Host* previous = nullptr;
    bool stale_retried = false;
    std::shared_ptr<const upstream::LoadBalancer> lb = cluster->lb;  // keeps hosts alive

    auto may_retry = [&](router::AttemptOutcome outcome, unsigned status) {
      if (retry == nullptr || retries_left == 0 || !router::ShouldRetry(*retry, outcome, status)) {
        return false;
      }
      if (stats.upstream_rq_retry_active.load(std::memory_order_relaxed) >=
          static_cast<int64_t>(breakers.max_retries)) {
        stats.upstream_rq_retry_overflow.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      return true;
    };
    auto backoff = [&]() -> asio::awaitable<void> {
      --retries_left;
      ++retry_number;
      stats.upstream_rq_retry.fetch_add(1, std::memory_order_relaxed);
      stats.upstream_rq_retry_active.fetch_add(1, std::memory_order_relaxed);
      co_await Sleep(router::Backoff(*retry, retry_number, worker_.rng()()));
      stats.upstream_rq_retry_active.fetch_sub(1, std::memory_order_relaxed);
    };
    auto timeout_reply = [&]() -> asio::awaitable<bool> {
      stats.upstream_rq_timeout.fetch_add(1, std::memory_order_relaxed);
      stats.CountResponse(504);
      co_return co_await LocalReply(version, 504, "upstream request timeout", false,
                                    response_mutations);
    };

    for (;;) {
      tcp::endpoint peer;
      const upstream::Host* host = nullptr;
      if (cluster->config->type == config::DiscoveryType::kOriginalDst) {
        if (!info_.redirected) {
          co_return co_await LocalReply(version, 503, "no healthy upstream", local_keep_alive(),
                                        response_mutations);
        }
        peer = info_.destination;
      } else {
        host = lb->Pick(worker_.rng(),
                        retry != nullptr && retry->avoid_previous_hosts ? previous : nullptr,
                        request_hash);
        if (host == nullptr) {
          stats.upstream_cx_none_healthy.fetch_add(1, std::memory_order_relaxed);
          co_return co_await LocalReply(version, 503, "no healthy upstream", local_keep_alive(),
                                        response_mutations);
        }
        peer = host->address;
      }
      previous = host;
      struct ActiveRequest {
        const upstream::Host* host;
        explicit ActiveRequest(const upstream::Host* h) : host(h) {
          if (host) {
            host->active_requests.fetch_add(1, std::memory_order_relaxed);
            host->total_requests.fetch_add(1, std::memory_order_relaxed);
          }
        }
        ~ActiveRequest() {
          if (host) host->active_requests.fetch_sub(1, std::memory_order_relaxed);
        }
      } active(host);

      const Clock::time_point now = Clock::now();
      Clock::time_point attempt_deadline = deadline.value_or(Clock::time_point::max());
      if (retry != nullptr && retry->per_try_timeout.count() > 0) {
        attempt_deadline = std::min(attempt_deadline, now + retry->per_try_timeout);
      }
      const Clock::time_point connect_deadline =
          std::min(attempt_deadline, now + cluster->config->connect_timeout);
      Acquired acquired = co_await worker_.pool().Acquire(
          cluster_name, peer, cluster->stats, connect_deadline, breakers.max_connections);
      if (acquired.overflow) {
        stats.upstream_cx_overflow.fetch_add(1, std::memory_order_relaxed);
        co_return co_await Overloaded(version, local_keep_alive(), response_mutations);
      }
      if (acquired.error) {
        if (deadline && Clock::now() >= *deadline) co_return co_await timeout_reply();
        // Nothing was sent yet: even a streamed request can try again.
        if (may_retry(router::AttemptOutcome::kConnectFailure, 0)) {
          co_await backoff();
          continue;
        }
        stats.CountResponse(503);
        co_return co_await LocalReply(version, 503, kConnectFailure, local_keep_alive(),
                                      response_mutations);
      }
      UpstreamConnection& up = *acquired.connection;
      if (attempt_deadline == Clock::time_point::max()) {
        up.stream.expires_never();
      } else {
        up.stream.expires_at(attempt_deadline);
      }
      boost::system::error_code ec;
      if (held) {
        co_await http::async_write(up.stream, *held, redirect_error(use_awaitable, ec));
      } else {
        ec = co_await Relay(down_, buffer_, parser, up.stream);
      }
      http::response_parser<http::buffer_body> response_parser;
      response_parser.body_limit(kNoBodyLimit);
      if (method == "HEAD") response_parser.skip(true);
      if (!ec) {
        co_await http::async_read_header(up.stream, up.buffer, response_parser,
                                         redirect_error(use_awaitable, ec));
      }
      if (ec) {
        spdlog::debug("upstream {}:{} of {}: {}", peer.address().to_string(), peer.port(),
                      cluster_name, ec.message());
        const bool timed_out = ec == beast::error::timeout;
        if (timed_out) {
          if (deadline && Clock::now() + std::chrono::milliseconds(1) >= *deadline) {
            co_return co_await timeout_reply();
          }
          stats.upstream_rq_per_try_timeout.fetch_add(1, std::memory_order_relaxed);
          if (held && may_retry(router::AttemptOutcome::kPerTryTimeout, 0)) {
            co_await backoff();
            continue;
          }
          co_return co_await timeout_reply();
        }
        // A pooled connection the server closed as we reused it: once, a fresh one.
        if (held && up.reused && !stale_retried) {
          stale_retried = true;
          continue;
        }
        if (held && may_retry(router::AttemptOutcome::kReset, 0)) {
          co_await backoff();
          continue;
        }
        stats.CountResponse(503);
        co_return co_await LocalReply(version, 503, kConnectionTermination, false,
                                      response_mutations);
      }
      auto& response = response_parser.get();
      const unsigned status = response.result_int();
      stats.CountResponse(status);
      if (held && may_retry(router::AttemptOutcome::kResponse, status)) {
        co_await backoff();  // the connection is dropped with its unread body
        continue;
      }
      const bool upstream_keep_alive = response.keep_alive();
      router::StripHopByHop(response);
      for (const auto* m : response_mutations.levels) {
        if (m != nullptr) router::ApplyHeaderMutations(*m, response);
      }
      response.version(version);
      if (version < 11 && response.chunked()) {
        response.chunked(false);  // HTTP/1.0 has no chunks: the end of the body is the close
        keep_alive = false;
      }
      response.keep_alive(keep_alive);
      CountDownstream(status);
      up.stream.expires_at(deadline.value_or(Clock::time_point::max()));
      if (!deadline) up.stream.expires_never();
      ec = co_await Relay(up.stream, up.buffer, response_parser, down_);
      if (ec) co_return false;  // mid-body: nothing to reply with, close
      if (upstream_keep_alive && response_parser.is_done()) {
        worker_.pool().Release(cluster_name, peer, std::move(acquired.connection));
      }
      co_return keep_alive;
    }
  }

  Worker& worker_;
  beast::tcp_stream down_;
  beast::flat_buffer buffer_;
  ConnectionInfo info_;
  std::string listener_name_;
  ListenerEntry listener_;
  const config::HttpChain& chain_;
};

}  // namespace

asio::awaitable<void> RunHttpSession(Worker& worker, tcp::socket socket, ConnectionInfo info,
                                     std::string listener_name, ListenerEntry listener,
                                     const config::HttpChain& chain) {
  HttpSession session(worker, std::move(socket), info, std::move(listener_name),
                      std::move(listener), chain);
  co_await session.Run();
}

}  // namespace meshpilot::sidecar::server
