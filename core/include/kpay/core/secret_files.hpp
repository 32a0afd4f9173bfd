// Rules every daemon applies to the files holding its secrets, and the TLS 1.2
// cipher list every TLS endpoint of ours uses. Header-only: small, and shared
// by the receiver, the Klarna client and the sim.
//
// The messages name the file and its mode, never anything read from it.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace kpay::core {

// TLS 1.2: ECDHE key exchange (forward secrecy) with an AEAD cipher only: no
// RSA key exchange, no CBC, 3DES, RC4, NULL, export or anonymous suites.
// TLS 1.3's suites are all AEAD and stay OpenSSL's defaults.
inline constexpr const char* kTls12Ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!PSK";

namespace detail {
inline std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}
}  // namespace detail

// "" when only the owner may read `path` (a private key, an API key); else why
// not. A file is not refused for being missing here: loading it says so.
inline std::string private_file_problem(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return "cannot stat '" + path + "': " + std::strerror(errno);
  }
  if ((st.st_mode & 077) == 0) return {};
  return "'" + path + "' is readable by group or others (mode " + detail::mode_text(st.st_mode) +
         "); make it 0600 or 0400";
}

// "" when others have no access to `path` and its group has some only when
// that group is the process's own (the service's private group, e.g.
// klarna-receiver); else why not. For state files (the signing-key database)
// that a service account shares with nobody.
inline std::string service_private_file_problem(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return "cannot stat '" + path + "': " + std::strerror(errno);
  }
  if ((st.st_mode & 007) != 0) {
    return "'" + path + "' is accessible to others (mode " + detail::mode_text(st.st_mode) +
           "); make it 0600";
  }
  if ((st.st_mode & 070) != 0 && st.st_gid != ::getegid()) {
    return "'" + path + "' is accessible to its group " + std::to_string(st.st_gid) +
           ", which is not this service's own group " + std::to_string(::getegid()) + " (mode " +
           detail::mode_text(st.st_mode) + "); make it 0600";
  }
  return {};
}

}  // namespace kpay::core
