// klarnactl's part of who may move money: the command senders' keys
// (senders_commands.cpp), the audit trail (audit_commands.cpp), the signature
// of the commands klarnactl sends, and the secret-file helpers they share
// with `keys` (keys_commands.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <utility>
#include <vector>

#include "klarnactl.hpp"

namespace kpay::ctl {

// A new database file created owner-only (0600; as root, owned by the owner
// of its directory); a warning when an existing one is readable by others; a
// secret read from a file or - (stdin), one trailing newline dropped.
void create_private_file(const std::string& path);
void warn_if_exposed(const std::string& path);
std::string read_secret(const std::string& source);

// senders add|list|retire|rotate|show; audit list|show.
void register_senders_commands(CLI::App& app, const GlobalOptions& global);
void register_audit_commands(CLI::App& app, const GlobalOptions& global);

// The kpay-sender / kpay-signature headers klarnactl's commands carry: signed
// with the newest active key of commands.klarnactl_sender; none when unset.
std::vector<std::pair<std::string, std::string>> command_signature_headers(
    const GlobalOptions& g, const std::string& value);

}  // namespace kpay::ctl
