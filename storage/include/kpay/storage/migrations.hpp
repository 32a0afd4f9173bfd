// Versioned schema migrations, applied at start-up inside one transaction.
//
// Each store names its schema ("keys", "state") so several can share a file;
// versions are recorded in `schema_migrations`. A database whose recorded
// version is newer than the newest migration this binary knows is refused
// (SchemaTooNewError): running old code on a newer schema could corrupt it.
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kpay/storage/sqlite.hpp"
#include "kpay/storage/store_error.hpp"  // SchemaTooNewError

namespace kpay::storage {

struct Migration {
  int version;            // 1, 2, 3 … without gaps
  std::string_view name;  // what it does, for the record
  std::string_view sql;
};

// Returns the schema version after migrating.
int migrate(Database& db, std::string_view schema, std::span<const Migration> migrations);
int schema_version(Database& db, std::string_view schema);

}  // namespace kpay::storage
