#include "translator/http_connection_manager.h"

#include <array>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "envoy/extensions/filters/http/cors/v3/cors.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "translator/http_route.h"
#include "xds/type/v3/typed_struct.pb.h"

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
    AllowWebSocket(hcm);
    *hcm.add_http_filters() = MetadataExchangeFilter(/*inbound=*/false);
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

void AllowWebSocket(HttpConnectionManager& hcm) {
  hcm.add_upgrade_configs()->set_upgrade_type("websocket");
}

envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter
MetadataExchangeFilter(bool inbound) {
  xds::type::v3::TypedStruct config;
  config.set_type_url("type.googleapis.com/io.istio.http.peer_metadata.Config");
  auto& fields = *config.mutable_value()->mutable_fields();
  for (const char* method : inbound ? std::array{"downstream_discovery", "downstream_propagation"}
                                    : std::array{"upstream_discovery", "upstream_propagation"}) {
    auto* entry = fields[method].mutable_list_value()->add_values()->mutable_struct_value();
    (*entry->mutable_fields())["istio_headers"].mutable_struct_value();
  }
  envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter filter;
  filter.set_name("istio.metadata_exchange");
  // Packed deterministically: the Struct's map would otherwise serialize in an order that
  // differs between runs, and so would the listener's version (a hash of its bytes).
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    config.SerializeToCodedStream(&coded);
  }
  filter.mutable_typed_config()->set_type_url("type.googleapis.com/xds.type.v3.TypedStruct");
  filter.mutable_typed_config()->set_value(std::move(bytes));
  filter.set_is_optional(true);
  return filter;
}

}  // namespace meshpilot::translator
