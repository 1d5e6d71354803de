#pragma once

#include <string>

#include "controlplane/source/kube/api_client.h"

namespace meshpilot::source {

// The message of a metav1.Status body ("events is forbidden: User \"...\" cannot create
// resource \"events\" in API group \"\" in the namespace \"ns\""), or the body's start.
std::string ApiStatusMessage(const std::string& body);

// One line naming the request and the API server's refusal, for logs:
// "POST /api/v1/namespaces/ns/events: HTTP 403 Forbidden: events is forbidden: ...".
std::string DescribeRefusal(const std::string& method, const std::string& path,
                            const ApiClient::Response& response);

}  // namespace meshpilot::source
