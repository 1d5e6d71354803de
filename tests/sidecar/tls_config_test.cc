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
  REQUIRE((*listener)->chains[0].tls != nullptr);
  const auto tls = (*listener)->chains[0].tls->Current();
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
  CHECK((*cluster)->tls->Current()->sni == "backend.test");
  CHECK((*cluster)->tls->Current()->verify_peer);
  auto insecure = Cluster(R"("sni": "backend.test")");
  REQUIRE(insecure.ok());
  CHECK_FALSE((*insecure)->tls->Current()->verify_peer);
  CHECK(SSL_CTX_get_verify_mode((*insecure)->tls->Current()->ssl->native_handle()) ==
        SSL_VERIFY_NONE);
  // raw_buffer is plaintext.
  auto plain = config::ParseCluster(FromJson<envoy::config::cluster::v3::Cluster>(
      R"({"name": "c", "type": "STATIC", "transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}})"));
  REQUIRE(plain.ok());
  CHECK((*plain)->tls == nullptr);
}

TEST_CASE("tls config: SDS but from files, missing files and unsafe settings are NACKed with their field") {
  const std::string chain = "filter_chains[0].transport_socket.typed_config.common_tls_context";
  auto sds = Listener(R"("common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "default",
      "sds_config": {"ads": {}, "resource_api_version": "V3"}}]})");
  REQUIRE_FALSE(sds.ok());
  CHECK(sds.status().message() ==
        chain + ".tls_certificate_sds_secret_configs[0].sds_config.ads: SDS over xDS is not "
                "available; give path_config_source");
  auto static_secret = Listener(
      R"("common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "default"}]})");
  REQUIRE_FALSE(static_secret.ok());
  CHECK(static_secret.status().message() ==
        chain + ".tls_certificate_sds_secret_configs[0].sds_config: missing (static secrets are "
                "not available; give path_config_source)");
  auto no_file = Listener(R"("common_tls_context": {"tls_certificate_sds_secret_configs": [{"name": "default",
      "sds_config": {"path_config_source": {"path": "/nonexistent/sds.yaml"}}}]})");
  REQUIRE_FALSE(no_file.ok());
  CHECK(no_file.status().message() ==
        chain + ".tls_certificate_sds_secret_configs[0]: /nonexistent/sds.yaml: cannot read");
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
      "default_validation_context": {}, "validation_context_sds_secret_config": {"name": "ROOTCA",
      "sds_config": {"api_config_source": {"api_type": "GRPC"}}}}})");
  REQUIRE_FALSE(root_sds.ok());
  CHECK(root_sds.status().message() ==
        upstream + ".combined_validation_context.validation_context_sds_secret_config.sds_config"
                   ".api_config_source: SDS over xDS is not available; give path_config_source");
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

void WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::ofstream(path.string() + ".tmp") << content;
  std::filesystem::rename(path.string() + ".tmp", path);  // as a rotation does it
}

std::string SecretResponse(const std::string& name, const std::string& secret) {
  return R"({"resources": [{"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
      "name": ")" + name + R"(", )" + secret + "}]}";
}

// A YAML DiscoveryResponse with the Secret "server" holding `body` (indented YAML).
std::string SecretYaml(const std::string& body) {
  return R"(resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: server
)" + body;
}

std::string CertificateYaml() {
  // Plain and quoted scalars alike, as Envoy's YAML loader reads them.
  return "  tls_certificate:\n    certificate_chain: {filename: " + Certs().path("server.pem") +
         "}\n    private_key: {filename: '" + Certs().path("server.key") + "'}\n";
}

TEST_CASE("tls config: SDS from a file builds the context, and a reload keeps the last good one") {
  const std::filesystem::path file = Certs().dir / "sds.yaml";
  WriteFile(file, SecretYaml(CertificateYaml()));
  auto listener = Listener(R"("common_tls_context": {"tls_certificate_sds_secret_configs": [{
      "name": "server", "sds_config": {"path_config_source": {"path": ")" + file.string() +
                           R"("}}}]})");
  REQUIRE(listener.ok());
  const config::TlsTransportSocket& socket = *(*listener)->chains[0].tls;
  const auto first = socket.Current();
  REQUIRE(first != nullptr);
  CHECK(SSL_CTX_get0_certificate(first->ssl->native_handle()) != nullptr);

  const std::string json = (file.parent_path() / "sds.json").string();
  WriteFile(json, SecretResponse("other", R"("tls_certificate": {})"));
  auto wrong_name = Listener(R"("common_tls_context": {"tls_certificate_sds_secret_configs": [{
      "name": "server", "sds_config": {"path_config_source": {"path": ")" + json + R"("}}}]})");
  REQUIRE_FALSE(wrong_name.ok());
  CHECK(wrong_name.status().message() ==
        "filter_chains[0].transport_socket.typed_config.common_tls_context."
        "tls_certificate_sds_secret_configs[0]: " + json + ": no secret named \"server\"");

  // Not YAML, then a validation context where a certificate is expected: the first stays.
  auto& reloadable = const_cast<config::TlsTransportSocket&>(socket);
  WriteFile(file, "resources: [unclosed");
  CHECK_FALSE(reloadable.Reload().ok());
  CHECK(socket.Current() == first);
  WriteFile(file, SecretYaml("  validation_context: {trusted_ca: {filename: " +
                             Certs().path("ca.pem") + "}}\n"));
  const absl::Status wrong_type = reloadable.Reload();
  CHECK(std::string(wrong_type.message()).ends_with(": secret \"server\" has no tls_certificate"));
  CHECK(socket.Current() == first);
  // The certificate again: a new context.
  WriteFile(file, SecretYaml(CertificateYaml()));
  REQUIRE(reloadable.Reload().ok());
  CHECK(socket.Current() != first);

  // An upstream's CA from a secret, merged over the default validation context's SANs.
  const std::string ca = (file.parent_path() / "ca.json").string();
  WriteFile(ca, SecretResponse("ROOTCA", R"("validation_context": {"trusted_ca": {"filename": ")" +
                                             Certs().path("ca.pem") + R"("}})"));
  auto cluster = Cluster(R"("common_tls_context": {"combined_validation_context": {
      "default_validation_context": {"match_subject_alt_names": [{"exact": "backend.test"}]},
      "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": {
        "path_config_source": {"path": ")" + ca + R"("}}}}})");
  REQUIRE(cluster.ok());
  CHECK((*cluster)->tls->Current()->verify_peer);
  CHECK((*cluster)->tls->Current()->san_matchers.size() == 1);
}

TEST_CASE("tls config: auto_config over TLS offers h2 and http/1.1 when ALPN is not given") {
  auto cluster = Cluster("", R"("typed_extension_protocol_options": {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "auto_config": {}}}, )");
  REQUIRE(cluster.ok());
  CHECK((*cluster)->protocol == config::UpstreamProtocol::kAlpn);
  REQUIRE((*cluster)->tls != nullptr);
  CHECK((*cluster)->tls->Current()->alpn == std::vector<std::string>{"h2", "http/1.1"});
}

}  // namespace
}  // namespace meshpilot::sidecar
