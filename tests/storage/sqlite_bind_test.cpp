// Statement::bind_view (sqlite.hpp): text bound in place, not copied, for the
// rows written on every event. What makes that safe: a temporary string does
// not compile, and run() / reset() drop the bindings, so nothing refers to a
// row's strings once its statement has run.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>

#include "kpay/storage/sqlite.hpp"

namespace kpay::storage {
namespace {

template <class S>
concept BindsATemporaryString = requires(S& s) {
  s.bind_view(1, std::string("x"));
};
template <class S>
concept BindsATemporaryOptional = requires(S& s) {
  s.bind_view(1, std::optional<std::string>("x"));
};
static_assert(!BindsATemporaryString<Statement>);
static_assert(!BindsATemporaryOptional<Statement>);

TEST(SqliteBind, TextBoundInPlaceIsStoredAndForgottenWhenTheStatementHasRun) {
  auto db = Database::open(":memory:");
  db.exec("CREATE TABLE t (n INTEGER, a TEXT, b TEXT)");
  auto insert = db.prepare("INSERT INTO t (n, a, b) VALUES (?, ?, ?)");
  {
    const std::string a = "first value, longer than any small-string buffer";
    const std::optional<std::string> b = "second";
    insert.bind_view(1, 1).bind_view(2, a).bind_view(3, b);
    insert.run();
  }  // the strings are gone: run() dropped the bindings that pointed at them
  insert.bind_view(1, 2);
  insert.run();  // a and b not bound again: NULL, not the freed bytes
  const std::optional<std::string_view> none;
  insert.bind_view(1, 3).bind_view(2, std::string_view("view")).bind_view(3, none);
  insert.run();

  auto rows = db.prepare("SELECT n, a, b FROM t ORDER BY n");
  ASSERT_TRUE(rows.step());
  EXPECT_EQ(rows.text(1), "first value, longer than any small-string buffer");
  EXPECT_EQ(rows.text(2), "second");
  ASSERT_TRUE(rows.step());
  EXPECT_TRUE(rows.is_null(1));
  EXPECT_TRUE(rows.is_null(2));
  ASSERT_TRUE(rows.step());
  EXPECT_EQ(rows.text(1), "view");
  EXPECT_TRUE(rows.is_null(2));
  EXPECT_FALSE(rows.step());
}

}  // namespace
}  // namespace kpay::storage
