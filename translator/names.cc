#include "translator/names.h"

#include "absl/strings/str_cat.h"

namespace meshpilot::translator {

std::string OutboundClusterName(uint32_t port, const std::string& subset,
                                const std::string& hostname) {
  return absl::StrCat("outbound|", port, "|", subset, "|", hostname);
}

std::vector<std::string> HostAliases(const model::Service& service,
                                     std::string_view client_namespace) {
  const std::string& name = service.meta.name;
  const std::string& ns = service.meta.namespace_;
  std::vector<std::string> hosts = {service.Hostname(), absl::StrCat(name, ".", ns, ".svc"),
                                    absl::StrCat(name, ".", ns)};
  if (ns == client_namespace) hosts.push_back(name);
  if (!service.cluster_ip.empty() && service.cluster_ip != "None") {
    hosts.push_back(service.cluster_ip);
  }
  return hosts;
}

}  // namespace meshpilot::translator
