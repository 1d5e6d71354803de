#include "translator/names.h"

#include <limits>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

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

namespace {
constexpr std::string_view kDomainSuffix = ".svc.cluster.local";
}  // namespace

std::string ResolveHost(std::string_view host, std::string_view config_namespace) {
  if (host.find('.') != std::string_view::npos || host.find('*') != std::string_view::npos) {
    return std::string(host);
  }
  return absl::StrCat(std::string(host), ".", std::string(config_namespace),
                      std::string(kDomainSuffix));
}

bool HostMatches(std::string_view hostname, std::string_view pattern) {
  if (pattern == "*") return true;
  if (pattern.starts_with("*")) {
    std::string_view suffix = pattern.substr(1);  // ".default.svc.cluster.local"
    return hostname.size() > suffix.size() && hostname.ends_with(suffix);
  }
  return hostname == pattern;
}

size_t HostSpecificity(std::string_view pattern) {
  if (!pattern.starts_with("*")) return std::numeric_limits<size_t>::max();
  return pattern.size();
}

bool IsExportedTo(const std::vector<std::string>& export_to, std::string_view config_namespace,
                  std::string_view client_namespace) {
  if (export_to.empty()) return true;
  return absl::c_any_of(export_to, [&](const std::string& entry) {
    return entry == "*" || entry == client_namespace ||
           (entry == "." && config_namespace == client_namespace);
  });
}

const model::Service* FindServiceByHostname(const model::MeshState& state,
                                            std::string_view hostname) {
  if (!hostname.ends_with(kDomainSuffix)) return nullptr;
  std::string_view name_ns = hostname.substr(0, hostname.size() - kDomainSuffix.size());
  std::vector<std::string> parts = absl::StrSplit(std::string(name_ns), '.');
  if (parts.size() != 2) return nullptr;
  auto it = state.services.find(absl::StrCat(parts[1], "/", parts[0]));
  return it == state.services.end() ? nullptr : &it->second;
}

}  // namespace meshpilot::translator
