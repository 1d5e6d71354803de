#pragma once

// Envoy's request_mirror_policies (shadowing): a copy of a request goes to the mirror cluster
// with "-shadow" appended to its host; its response is read and discarded. The copy never
// delays or fails the request it mirrors, and counts in the mirror cluster's stats like any
// upstream request.

#include <chrono>
#include <memory>
#include <string>

#include "sidecar/config/route.h"
#include "sidecar/http/header_map.h"
#include "sidecar/proxy_config.h"
#include "sidecar/server/stream.h"
#include "sidecar/server/worker.h"

namespace meshpilot::sidecar::server {

// Starts the copy on the worker's thread and returns at once. `headers` are the request as it
// goes upstream; `body` is the whole request body.
void MirrorRequest(Worker& worker, std::shared_ptr<const ProxyConfig> config,
                   const config::MirrorPolicy& policy, http::HeaderMap headers, std::string body,
                   Protocol downstream, std::chrono::milliseconds timeout);

}  // namespace meshpilot::sidecar::server
