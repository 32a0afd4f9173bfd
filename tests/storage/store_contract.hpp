// The storage contract suite (storage/README.md): every interface of
// storage::Store tested once, run against each backend in backends().
//
// A backend joins by adding its factory to store_backends.cpp; each test
// file instantiates its fixture over that list (KPAY_STORE_CONTRACT).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/store.hpp"

namespace kpay::storage::contract {

// Makes stores of one backend. open_fresh() starts an empty, migrated
// database and returns a store on it; open_again() returns another store
// object (connection) on the database of the last open_fresh().
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual std::unique_ptr<Store> open_fresh() = 0;
  virtual std::unique_ptr<Store> open_again() = 0;
  // Removes what open_fresh made (files, schemas).
  virtual void clean_up() = 0;
  // Sessions of the database waiting for a lock another one holds, where
  // the backend can tell (a server's session list); none: it cannot.
  virtual std::optional<int> sessions_waiting_on_locks() { return std::nullopt; }
};

using BackendFactory = std::unique_ptr<Backend> (*)();

struct NamedFactory {
  std::string name;
  BackendFactory make;
};

// Every backend the suite runs against (store_backends.cpp).
std::vector<NamedFactory> backends();

class StoreContract : public ::testing::TestWithParam<NamedFactory> {
 protected:
  void SetUp() override {
    backend_ = GetParam().make();
    store_ = backend_->open_fresh();
  }
  void TearDown() override {
    store_.reset();
    backend_->clean_up();
  }
  Store& store() { return *store_; }
  std::unique_ptr<Store> second_connection() { return backend_->open_again(); }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Store> store_;
};

inline std::string backend_name(const ::testing::TestParamInfo<NamedFactory>& info) {
  return info.param.name;
}

}  // namespace kpay::storage::contract

#define KPAY_STORE_CONTRACT(Fixture)                                                   \
  INSTANTIATE_TEST_SUITE_P(Backends, Fixture,                                          \
                           ::testing::ValuesIn(::kpay::storage::contract::backends()), \
                           ::kpay::storage::contract::backend_name)
