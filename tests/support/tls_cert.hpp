// A throw-away self-signed certificate (P-256, CN=localhost, SAN 127.0.0.1)
// written as PEM files, for TLS tests on loopback.
#pragma once

#include <string>

namespace kpay::test {

struct CertFiles {
  std::string certificate;
  std::string private_key;
};

CertFiles write_self_signed_cert(const std::string& directory);

// A throw-away certificate authority (P-256, CN=`common_name`, CA:TRUE) written
// as `directory`/`stem`.crt and .key, for mTLS tests.
CertFiles write_ca_cert(const std::string& directory, const std::string& stem,
                        const std::string& common_name);

// A client/server certificate (P-256, CN=`common_name`) signed by `ca`, written
// as `directory`/`stem`.crt and .key.
CertFiles write_cert_signed_by(const CertFiles& ca, const std::string& directory,
                               const std::string& stem, const std::string& common_name);

}  // namespace kpay::test
