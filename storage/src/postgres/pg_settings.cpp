// Backend names and the password file (kpay/storage/postgres.hpp).
#include <fstream>

#include "kpay/core/secret_files.hpp"
#include "kpay/storage/postgres.hpp"

namespace kpay::storage {

StoreBackend parse_store_backend(std::string_view name) {
  if (name == "sqlite") return StoreBackend::sqlite;
  if (name == "postgresql") return StoreBackend::postgresql;
  throw std::invalid_argument("must be \"sqlite\" or \"postgresql\", not \"" + std::string(name) +
                              "\"");
}

std::string_view store_backend_name(StoreBackend b) {
  return b == StoreBackend::sqlite ? "sqlite" : "postgresql";
}

std::string read_password_file(const std::string& path) {
  if (std::string problem = core::private_file_problem(path); !problem.empty()) {
    throw std::runtime_error("postgresql.password_file: " + problem);
  }
  std::ifstream in(path);
  std::string password;
  if (!in || !std::getline(in, password)) {
    throw std::runtime_error("postgresql.password_file: cannot read '" + path + "'");
  }
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty()) {
    throw std::runtime_error("postgresql.password_file: '" + path + "' is empty");
  }
  return password;
}

}  // namespace kpay::storage
