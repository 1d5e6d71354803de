#include "sidecar/server/relay.h"

#include <array>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace meshpilot::sidecar::server {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

using Clock = std::chrono::steady_clock;

asio::awaitable<void> Pump(Transport& from, Transport& to, std::atomic<uint64_t>& bytes,
                           std::atomic<uint64_t>* istio_bytes, Clock::time_point& last_activity) {
  std::array<char, 16384> buffer;
  for (;;) {
    boost::system::error_code ec;
    size_t n = co_await from.async_read_some(asio::buffer(buffer), redirect_error(use_awaitable, ec));
    if (n > 0) {
      last_activity = Clock::now();
      boost::system::error_code write_ec;
      co_await asio::async_write(to, asio::buffer(buffer.data(), n),
                                 redirect_error(use_awaitable, write_ec));
      if (write_ec) {
        from.Close();
        to.Close();
        co_return;
      }
      bytes.fetch_add(n, std::memory_order_relaxed);
      if (istio_bytes != nullptr) istio_bytes->fetch_add(n, std::memory_order_relaxed);
    }
    // A TLS peer that shuts its TCP side without close_notify ends its stream too. Waiting
    // for the close_notify to leave is bounded by the idle timeout, as any write.
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
      co_await to.ShutdownSend();
      co_return;
    }
    if (ec) {
      from.Close();
      to.Close();
      co_return;
    }
  }
}

asio::awaitable<void> PumpThenSignal(Transport& from, Transport& to, std::atomic<uint64_t>& bytes,
                                     std::atomic<uint64_t>* istio_bytes,
                                     Clock::time_point& last_activity, bool& done,
                                     asio::steady_timer& signal) {
  co_await Pump(from, to, bytes, istio_bytes, last_activity);
  done = true;
  signal.cancel();
}

// Closes both connections once no byte has moved either way for `idle` (the pumps then end);
// returns when that happened or when `finished` is set and `timer` cancelled, then signals.
asio::awaitable<void> IdleWatch(Transport& a, Transport& b, std::chrono::milliseconds idle,
                                const Clock::time_point& last_activity, const bool& finished,
                                asio::steady_timer& timer, bool& done,
                                asio::steady_timer& signal) {
  for (;;) {
    timer.expires_at(last_activity + idle);
    boost::system::error_code ec;
    co_await timer.async_wait(redirect_error(use_awaitable, ec));
    if (finished) break;
    if (Clock::now() >= last_activity + idle) {
      a.Close();
      b.Close();
      break;
    }
  }
  done = true;
  signal.cancel();
}

}  // namespace

asio::awaitable<void> Relay(asio::io_context& io, Transport& downstream, Transport& upstream,
                            RelayCounters counters, std::chrono::milliseconds idle) {
  boost::system::error_code ec;
  asio::steady_timer signal(io, Clock::time_point::max());
  bool upstream_done = false;
  Clock::time_point last_activity = Clock::now();
  asio::co_spawn(io,
                 PumpThenSignal(upstream, downstream, counters.to_downstream,
                                counters.istio_to_downstream, last_activity, upstream_done,
                                signal),
                 asio::detached);
  // The watch is stopped (and waited for) before the connections and the timers go.
  asio::steady_timer idle_timer(io);
  bool finished = false;
  bool watch_done = idle.count() == 0;
  asio::steady_timer watch_signal(io, Clock::time_point::max());
  if (!watch_done) {
    asio::co_spawn(io,
                   IdleWatch(downstream, upstream, idle, last_activity, finished, idle_timer,
                             watch_done, watch_signal),
                   asio::detached);
  }
  co_await Pump(downstream, upstream, counters.to_upstream, counters.istio_to_upstream,
                last_activity);
  if (!upstream_done) co_await signal.async_wait(redirect_error(use_awaitable, ec));
  finished = true;
  idle_timer.cancel();
  if (!watch_done) co_await watch_signal.async_wait(redirect_error(use_awaitable, ec));
}

}  // namespace meshpilot::sidecar::server
