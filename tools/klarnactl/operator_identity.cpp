// Who runs klarnactl, for the audit trail of operators' actions (actions
// retry, dead-letters replay): --operator NAME, else the user sudo ran it for
// ($SUDO_USER), else $USER, else the account of the process's uid.
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>

#include "klarnactl.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/storage/audit_log.hpp"

namespace kpay::ctl {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The account of the real uid: "alice", else "uid 1000".
std::string account_of_uid() {
  const auto uid = getuid();
  if (const passwd* pw = getpwuid(uid); pw && pw->pw_name && *pw->pw_name) return pw->pw_name;
  return "uid " + std::to_string(uid);
}

// What the OS says: $SUDO_USER, $USER, then the uid's account.
std::string os_identity() {
  for (const char* name : {"SUDO_USER", "USER"}) {
    if (auto v = env(name); !v.empty()) return v;
  }
  return account_of_uid();
}

}  // namespace

void check_operator_name(const std::string& name) {
  if (name.empty() || name.size() > 128) {
    throw CLI::ValidationError("--operator", "give a name of 1 to 128 characters");
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) {
      throw CLI::ValidationError("--operator", "control characters are not allowed");
    }
  }
}

std::string operator_identity(const GlobalOptions& g) {
  return g.operator_name ? *g.operator_name : os_identity();
}

storage::AuditEvent operator_event(const GlobalOptions& g, const std::string& status,
                                   const std::string& detail) {
  storage::AuditEvent e;
  e.at_ms = core::now_ms();
  e.kind = "operator";
  e.status = status;
  e.operator_name = operator_identity(g);
  e.detail = detail;
  // A name given with --operator is the operator's word; the account is the OS's.
  const auto os = os_identity();
  if (g.operator_name && *g.operator_name != os) *e.detail += " (OS user " + os + ")";
  return e;
}

}  // namespace kpay::ctl
