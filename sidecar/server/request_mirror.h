#pragma once

// Envoy's request_mirror_policies (shadowing): a copy of a request goes to the mirror cluster
// with "-shadow" appended to its host, its body streamed as the request's is; its response is
// read and discarded. The copy never delays or fails the request it mirrors, and counts in
// the mirror cluster's stats like any upstream request.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/steady_timer.hpp>

#include "sidecar/config/route.h"
#include "sidecar/http/header_map.h"
#include "sidecar/proxy_config.h"
#include "sidecar/server/stream.h"
#include "sidecar/server/worker.h"

namespace meshpilot::sidecar::server {

// The body of a copy as the router hands it over: all at once (a held body) or chunk by chunk
// as the router streams the request's body upstream. The copy never holds the request up: a
// copy more than kMirrorBufferLimit behind, or whose request ends without its whole body, is
// reset (Envoy resets a shadow stream whose buffer overflows).
class MirrorBody {
 public:
  // Envoy's default per-connection buffer limit.
  static constexpr size_t kMirrorBufferLimit = 1024 * 1024;

  explicit MirrorBody(boost::asio::io_context& io);
  // On the worker's thread; never waits.
  void Append(std::string_view chunk, bool end);
  // The request is done: a copy still waiting for body bytes is reset.
  void Finish();

 private:
  friend class MirrorCopy;
  std::string pending_;
  bool ended_ = false;
  bool abandoned_ = false;
  boost::asio::steady_timer wake_;
};

// Starts the copy on the worker's thread and returns at once. `headers` are the request as it
// goes upstream; the body comes through the returned MirrorBody.
std::shared_ptr<MirrorBody> MirrorRequest(Worker& worker, std::shared_ptr<const ProxyConfig> config,
                                          const config::MirrorPolicy& policy,
                                          http::HeaderMap headers, Protocol downstream,
                                          std::chrono::milliseconds timeout);

}  // namespace meshpilot::sidecar::server
