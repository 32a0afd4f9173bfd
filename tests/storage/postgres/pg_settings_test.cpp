// processor.store and the password file (kpay/storage/postgres.hpp).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "child_process.hpp"
#include "kpay/storage/postgres.hpp"

using namespace kpay::storage;

namespace kpay::test {
namespace {

TEST(StoreBackend, ParsesTheTwoNames) {
  EXPECT_EQ(parse_store_backend("sqlite"), StoreBackend::sqlite);
  EXPECT_EQ(parse_store_backend("postgresql"), StoreBackend::postgresql);
  EXPECT_EQ(store_backend_name(StoreBackend::postgresql), "postgresql");
  EXPECT_THROW(parse_store_backend("postgres"), std::invalid_argument);
  EXPECT_THROW(parse_store_backend(""), std::invalid_argument);
}

TEST(PasswordFile, FirstLineOfAPrivateFileAndNeverShown) {
  const std::string dir = make_temp_dir("pg-password");
  const std::string path = dir + "/pg.password";
  { std::ofstream(path) << "s3cr3t-Pw\r\nsecond line\n"; }
  ::chmod(path.c_str(), 0600);
  EXPECT_EQ(read_password_file(path), "s3cr3t-Pw");
  ::chmod(path.c_str(), 0640);
  try {
    read_password_file(path);
    ADD_FAILURE() << "a group-readable password file was read";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("0640"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("s3cr3t"), std::string::npos) << e.what();
  }
  { std::ofstream(path, std::ios::trunc) << "\n"; }
  ::chmod(path.c_str(), 0600);
  EXPECT_THROW(read_password_file(path), std::runtime_error);
  EXPECT_THROW(read_password_file(dir + "/missing"), std::runtime_error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kpay::test
