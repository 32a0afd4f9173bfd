#include "tls_cert.hpp"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace kpay::test {

CertFiles write_self_signed_cert(const std::string& dir) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) throw std::runtime_error("EC key generation failed");
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7L * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  if (X509_EXTENSION* ext =
          X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost")) {
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) throw std::runtime_error("sign failed");

  CertFiles files{dir + "/tls.crt", dir + "/tls.key"};
  FILE* c = std::fopen(files.certificate.c_str(), "w");
  FILE* k = std::fopen(files.private_key.c_str(), "w");
  if (c == nullptr || k == nullptr) throw std::runtime_error("cannot write cert files");
  PEM_write_X509(c, cert.get());
  PEM_write_PrivateKey(k, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(c);
  std::fclose(k);
  ::chmod(files.private_key.c_str(), 0600);  // the daemons refuse keys others can read
  return files;
}

namespace {

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

CertPtr new_cert(EVP_PKEY* key, const std::string& common_name, long serial) {
  CertPtr cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7L * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  return cert;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value)) {
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
}

CertFiles write_pem(const std::string& dir, const std::string& stem, X509* cert, EVP_PKEY* key) {
  CertFiles files{dir + "/" + stem + ".crt", dir + "/" + stem + ".key"};
  FILE* c = std::fopen(files.certificate.c_str(), "w");
  FILE* k = std::fopen(files.private_key.c_str(), "w");
  if (c == nullptr || k == nullptr) throw std::runtime_error("cannot write cert files");
  PEM_write_X509(c, cert);
  PEM_write_PrivateKey(k, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(c);
  std::fclose(k);
  ::chmod(files.private_key.c_str(), 0600);  // the daemons refuse keys others can read
  return files;
}

template <class T, class Read>
T read_pem(const std::string& path, Read read, void (*free_fn)(typename T::element_type*)) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) throw std::runtime_error("cannot read " + path);
  T value(read(f, nullptr, nullptr, nullptr), free_fn);
  std::fclose(f);
  if (!value) throw std::runtime_error("bad PEM in " + path);
  return value;
}

}  // namespace

CertFiles write_ca_cert(const std::string& dir, const std::string& stem,
                        const std::string& common_name) {
  KeyPtr key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) throw std::runtime_error("EC key generation failed");
  auto cert = new_cert(key.get(), common_name, 1);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) throw std::runtime_error("sign failed");
  return write_pem(dir, stem, cert.get(), key.get());
}

CertFiles write_cert_signed_by(const CertFiles& ca, const std::string& dir, const std::string& stem,
                               const std::string& common_name) {
  auto ca_cert = read_pem<CertPtr>(ca.certificate, PEM_read_X509, X509_free);
  auto ca_key = read_pem<KeyPtr>(ca.private_key, PEM_read_PrivateKey, EVP_PKEY_free);
  KeyPtr key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) throw std::runtime_error("EC key generation failed");
  auto cert = new_cert(key.get(), common_name, 2);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  add_extension(cert.get(), ca_cert.get(), NID_basic_constraints, "CA:FALSE");
  add_extension(cert.get(), ca_cert.get(), NID_ext_key_usage, "clientAuth,serverAuth");
  add_extension(cert.get(), ca_cert.get(), NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0)
    throw std::runtime_error("sign failed");
  return write_pem(dir, stem, cert.get(), key.get());
}

}  // namespace kpay::test
