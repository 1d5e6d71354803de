// envoy.transport_sockets.tls on filter chains and clusters: what is built, and what is NACKed
// with its field path. Certificates are made by the openssl CLI in a temporary directory.

#include <openssl/ssl.h>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <filesystem>
#include <string>

#include "sidecar/config/cluster.h"
#include "sidecar/config/listener.h"
#include "sidecar/config/tls.h"
#include "tests/sidecar/proto_json.h"

namespace meshpilot::sidecar {
namespace {

using testing::FromJson;

// A CA and a server certificate it signed (SAN DNS:backend.test), made once.
struct Certificates {
  std::filesystem::path dir;
  Certificates() {
    dir = std::filesystem::temp_directory_path() / ("meshproxy-tls-unit-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string d = dir.string();
    const std::string script =
        "cd " + d + " && " +
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=unit-ca -keyout ca.key -out ca.pem >/dev/null 2>&1 && "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=backend.test "
        "-keyout server.key -out server.csr >/dev/null 2>&1 && "
        "printf 'subjectAltName=DNS:backend.test\\n' > san.ext && "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
        "-extfile san.ext -out server.pem >/dev/null 2>&1";
    REQUIRE(std::system(script.c_str()) == 0);
  }
  ~Certificates() { std::filesystem::remove_all(dir); }
  std::string path(const char* name) const { return (dir / name).string(); }
};

const Certificates& Certs() {
  static const Certificates certificates;
  return certificates;
}

std::string DownstreamChain(const std::string& context) {
  return R"({"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
    "filter_chains": [{"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
      )" + context + R"(}},
      "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": "l", "cluster": "c"}}]}]})";
}

absl::StatusOr<std::shared_ptr<const config::ListenerConfig>> Listener(const std::string& context) {
  return config::ParseListener(
      FromJson<envoy::config::listener::v3::Listener>(DownstreamChain(context)));
}

absl::StatusOr<std::shared_ptr<const config::ClusterConfig>> Cluster(const std::string& context,
                                                                    const std::string& more = "") {
  return config::ParseCluster(FromJson<envoy::config::cluster::v3::Cluster>(
      R"({"name": "c", "type": "STATIC", "connect_timeout": "1s", )" + more +
      R"("transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        )" + context + "}}}"));
}

std::string ServerCertificate() {
  return R"({"certificate_chain": {"filename": ")" + Certs().path("server.pem") +
         R"("}, "private_key": {"filename": ")" + Certs().path("server.key") + R"("}})";
}

TEST_CASE("tls config: a downstream context with certificate, client CA and ALPN") {
  auto listener = Listener(R"("common_tls_context": {
      "tls_certificates": [)" + ServerCertificate() + R"(],
      "validation_context": {"trusted_ca": {"filename": ")" + Certs().path("ca.pem") + R"("},
        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"prefix": "spiffe://"}}]},
      "alpn_protocols": ["h2", "http/1.1"],
      "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "cipher_suites": ["ECDHE-ECDSA-AES128-GCM-SHA256"]}},
    "require_client_certificate": true)");
  REQUIRE(listener.ok());
  const auto& tls = (*listener)->chains[0].tls;
  REQUIRE(tls != nullptr);
  CHECK(tls->require_client_certificate);
  CHECK(tls->verify_peer);
  CHECK(tls->alpn == std::vector<std::string>{"h2", "http/1.1"});
  REQUIRE(tls->san_matchers.size() == 1);
  CHECK(tls->san_matchers[0].type == config::SanMatcher::Type::kUri);
  CHECK(SSL_CTX_get_min_proto_version(tls->ssl->native_handle()) == TLS1_2_VERSION);
}

TEST_CASE("tls config: an upstream context with SNI and inline CA; none verifies nothing") {
  std::string ca_pem;
  {
    std::ifstream in(Certs().path("ca.pem"));
    ca_pem.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::string escaped;
  for (char c : ca_pem) escaped += c == '\n' ? std::string("\\n") : std::string(1, c);
  auto cluster = Cluster(R"("sni": "backend.test", "common_tls_context": {
      "validation_context": {"trusted_ca": {"inline_string": ")" + escaped + R"("},
        "match_subject_alt_names": [{"exact": "backend.test"}]}})");
  REQUIRE(cluster.ok());
  REQUIRE((*cluster)->tls != nullptr);
  CHECK((*cluster)->tls->sni == "backend.test");
  CHECK((*cluster)->tls->verify_peer);
  auto insecure = Cluster(R"("sni": "backend.test")");
  REQUIRE(insecure.ok());
  CHECK_FALSE((*insecure)->tls->verify_peer);
  CHECK(SSL_CTX_get_verify_mode((*insecure)->tls->ssl->native_handle()) == SSL_VERIFY_NONE);
  // raw_buffer is plaintext.
  auto plain = config::ParseCluster(FromJson<envoy::config::cluster::v3::Cluster>(
      R"({"name": "c", "type": "STATIC", "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}})"));
  REQUIRE(plain.ok());
  CHECK((*plain)->tls == nullptr);
}

TEST_CASE("tls config: SDS, missing files and unsafe settings are NACKed with their field") {
  const std::string chain = "filter_chains[0].transport_socket.typed_config.common_tls_context";
  auto sds = Listener(R"("common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "default"}]})");
  REQUIRE_FALSE(sds.ok());
  CHECK(sds.status().message() ==
        chain + ".tls_certificate_sds_secret_configs: SDS is not available; give "
                "tls_certificates from files or inline");
  auto no_cert = Listener(R"("common_tls_context": {})");
  REQUIRE_FALSE(no_cert.ok());
  CHECK(no_cert.status().message() == chain + ".tls_certificates: a server context needs a certificate");
  auto no_ca = Listener(R"("common_tls_context": {"tls_certificates": [)" + ServerCertificate() +
                        R"(]}, "require_client_certificate": true)");
  REQUIRE_FALSE(no_ca.ok());
  CHECK(no_ca.status().message() ==
        "filter_chains[0].transport_socket.typed_config.require_client_certificate: needs "
        "common_tls_context.validation_context.trusted_ca");
  auto missing = Listener(R"("common_tls_context": {"tls_certificates": [{
      "certificate_chain": {"filename": "/nonexistent/cert.pem"}, "private_key": {"inline_string": "x"}}]})");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message() ==
        chain + ".tls_certificates[0].certificate_chain.filename: cannot read \"/nonexistent/cert.pem\"");

  const std::string upstream = "transport_socket.typed_config.common_tls_context";
  auto root_sds = Cluster(R"("common_tls_context": {"combined_validation_context": {
      "default_validation_context": {}, "validation_context_sds_secret_config": {"name": "ROOTCA"}}})");
  REQUIRE_FALSE(root_sds.ok());
  CHECK(root_sds.status().message() ==
        upstream + ".combined_validation_context.validation_context_sds_secret_config: SDS is not "
                   "available; give default_validation_context.trusted_ca");
  auto san_alone = Cluster(R"("common_tls_context": {"validation_context": {
      "match_subject_alt_names": [{"exact": "backend.test"}]}})");
  REQUIRE_FALSE(san_alone.ok());
  CHECK(san_alone.status().message() == upstream + ".validation_context: SAN matching needs trusted_ca");
  auto versions = Cluster(R"("common_tls_context": {"tls_params": {
      "tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_2"}})");
  REQUIRE_FALSE(versions.ok());
  CHECK(versions.status().message() ==
        upstream + ".tls_params: tls_minimum_protocol_version is above tls_maximum_protocol_version");
  auto ciphers = Cluster(R"("common_tls_context": {"tls_params": {"cipher_suites": ["NO-SUCH-CIPHER"]}})");
  REQUIRE_FALSE(ciphers.ok());
  CHECK(std::string(ciphers.status().message()).starts_with(
      upstream + ".tls_params.cipher_suites: no usable cipher suite in \"NO-SUCH-CIPHER\""));
  auto other = config::ParseCluster(FromJson<envoy::config::cluster::v3::Cluster>(
      R"({"name": "c", "type": "STATIC", "transport_socket": {"name": "alts", "typed_config": {
          "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"}}})"));
  REQUIRE_FALSE(other.ok());
  CHECK(other.status().message() ==
        "transport_socket.typed_config: unsupported transport socket "
        "\"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\" "
        "(envoy.transport_sockets.tls with UpstreamTlsContext, or raw_buffer)");
}

TEST_CASE("tls config: auto_config over TLS offers h2 and http/1.1 when ALPN is not given") {
  auto cluster = Cluster("", R"("typed_extension_protocol_options": {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "auto_config": {}}}, )");
  REQUIRE(cluster.ok());
  CHECK((*cluster)->protocol == config::UpstreamProtocol::kAlpn);
  REQUIRE((*cluster)->tls != nullptr);
}

}  // namespace
}  // namespace meshpilot::sidecar
