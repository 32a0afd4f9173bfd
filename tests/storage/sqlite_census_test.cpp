// The statement census (storage/src/sqlite_census.hpp): with
// KPAY_SQLITE_CENSUS naming a file, a connection's statements are counted
// and written there when it closes; without it nothing is written. Its own
// binary: the variable is read once per process, before the first open.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "child_process.hpp"
#include "kpay/storage/sqlite.hpp"

namespace kpay::storage {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The census line of `sql`: its columns (count, total_ms, us_each,
// pages_each, misses_each, written_each, rows_each, ...), or empty.
std::string line_of(const std::string& census, const std::string& sql) {
  std::istringstream in(census);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() >= sql.size() && line.ends_with("\t" + sql)) return line;
  }
  return {};
}

TEST(SqliteCensus, CountsEachStatementAndItsRowsAndWritesTheTableWhenTheConnectionCloses) {
  const auto dir = test::make_temp_dir("census");
  const std::string census = dir + "/census.tsv";
  ::setenv("KPAY_SQLITE_CENSUS", census.c_str(), 1);
  {
    auto db = Database::open(dir + "/state.db");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    Transaction tx(db);
    auto insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    for (int i = 0; i < 3; ++i) {
      insert.bind(1, "row " + std::to_string(i));
      insert.run();
    }
    tx.commit();
    EXPECT_FALSE(std::filesystem::exists(census)) << "written only when the connection closes";
  }
  const std::string text = read_file(census);
  EXPECT_NE(text.find("# connection "), std::string::npos) << text;
  const std::string insert = line_of(text, "INSERT INTO t (v) VALUES (?)");
  ASSERT_FALSE(insert.empty()) << text;
  EXPECT_TRUE(insert.starts_with("3\t")) << insert;  // three executions
  std::istringstream cols(insert);
  std::string col;
  for (int i = 0; i < 7; ++i) std::getline(cols, col, '\t');
  EXPECT_EQ(col, "1.00") << "one row written per execution: " << insert;
  const std::string commit = line_of(text, "COMMIT");
  ASSERT_FALSE(commit.empty()) << text;
  std::istringstream ccols(commit);
  for (int i = 0; i < 6; ++i) std::getline(ccols, col, '\t');
  EXPECT_GT(std::stod(col), 0.0) << "the commit wrote WAL pages: " << commit;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kpay::storage
