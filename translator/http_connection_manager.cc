#include "translator/http_connection_manager.h"

#include "envoy/extensions/filters/http/router/v3/router.pb.h"

namespace meshpilot::translator {

using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

HttpConnectionManager RdsConnectionManager(const std::string& stat_prefix,
                                           const std::string& route_config_name) {
  HttpConnectionManager hcm;
  hcm.set_stat_prefix(stat_prefix);
  auto* rds = hcm.mutable_rds();
  rds->set_route_config_name(route_config_name);
  rds->mutable_config_source()->mutable_ads();
  rds->mutable_config_source()->set_resource_api_version(envoy::config::core::v3::V3);
  auto* router = hcm.add_http_filters();
  router->set_name("envoy.filters.http.router");
  router->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::router::v3::Router());
  return hcm;
}

}  // namespace meshpilot::translator
