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

}  // namespace kpay::test
