#include "translator/http_connection_manager.h"

#include "envoy/extensions/filters/http/cors/v3/cors.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "translator/http_route.h"

namespace meshpilot::translator {

using envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;

HttpConnectionManager RdsConnectionManager(const std::string& stat_prefix,
                                           const std::string& route_config_name,
                                           bool proxyless_grpc) {
  HttpConnectionManager hcm;
  hcm.set_stat_prefix(stat_prefix);
  auto* rds = hcm.mutable_rds();
  rds->set_route_config_name(route_config_name);
  rds->mutable_config_source()->mutable_ads();
  rds->mutable_config_source()->set_resource_api_version(envoy::config::core::v3::V3);
  if (!proxyless_grpc) {
    auto* cors = hcm.add_http_filters();
    cors->set_name(kCorsFilter);
    cors->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::cors::v3::Cors());
  }
  auto* fault = hcm.add_http_filters();
  fault->set_name(kFaultFilter);
  fault->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::fault::v3::HTTPFault());
  auto* router = hcm.add_http_filters();
  router->set_name("envoy.filters.http.router");
  router->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::router::v3::Router());
  return hcm;
}

}  // namespace meshpilot::translator
