// The Grafana dashboard (config/grafana/klarna.json) cannot rot: it takes its
// Prometheus data source from a variable, and every panel's query names only
// metrics the daemons register (core/, receiver/, processor/, klarna/,
// storage/: the registry calls in the code, as the docs check reads them),
// with labels those metrics have; histogram series (_bucket, _sum, _count)
// only of histograms.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Metric {
  std::string kind;  // counter, gauge, gauge_callback, histogram
  std::set<std::string> labels;
};
using Metrics = std::map<std::string, Metric>;

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<std::string> quoted(const std::string& text) {
  static const std::regex word(R"re("([a-z_][a-z0-9_]*)")re");
  std::set<std::string> out;
  for (std::sregex_iterator i(text.begin(), text.end(), word), end; i != end; ++i) {
    out.insert((*i)[1]);
  }
  return out;
}

// Labels passed as a variable (register_build_info): the names it is
// initialized with and those appended to it in the same file.
std::set<std::string> labels_of_variable(const std::string& text, const std::string& var) {
  std::set<std::string> out;
  const std::regex init(var + R"re(\s*=\s*\{([^}]*)\})re");
  const std::regex append(var + R"re(\.(?:emplace_back|push_back)\(("[a-z_0-9]+")\))re");
  for (std::sregex_iterator i(text.begin(), text.end(), init), end; i != end; ++i) {
    out.merge(quoted((*i)[1]));
  }
  for (std::sregex_iterator i(text.begin(), text.end(), append), end; i != end; ++i) {
    out.merge(quoted((*i)[1]));
  }
  return out;
}

// The metric names spelled once in the Kafka contract header
// (klarna::contract::metric::NAME), by the name the code registers them with.
std::map<std::string, std::string> contract_metric_names(const std::filesystem::path& root) {
  static const std::regex constant(
      R"re(inline constexpr char ([a-z_][a-z0-9_]*)\[\] = "(kpay_[a-z0-9_]+)")re");
  const auto text = read(root / "klarna/include/kpay/klarna/kafka_contract.hpp");
  std::map<std::string, std::string> out;
  for (std::sregex_iterator i(text.begin(), text.end(), constant), end; i != end; ++i) {
    out["klarna::contract::metric::" + (*i)[1].str()] = '"' + (*i)[2].str() + '"';
  }
  return out;
}

// The code with every contract constant replaced by the quoted name it stands for.
std::string with_contract_names(std::string text, const std::map<std::string, std::string>& names) {
  for (const auto& [constant, quoted_name] : names) {
    for (auto at = text.find(constant); at != std::string::npos;
         at = text.find(constant, at + quoted_name.size())) {
      text.replace(at, constant.size(), quoted_name);
    }
  }
  return text;
}

// Every `registry.counter|gauge|gauge_callback|histogram("kpay_…", "help" …,
// {labels} | variable` in the code (a name from the contract header counts as
// the name it stands for).
Metrics registered_metrics(const std::filesystem::path& root) {
  const auto contract = contract_metric_names(root);
  static const std::regex call(
      R"re(\b(counter|gauge_callback|gauge|histogram)\s*\(\s*"(kpay_[a-z0-9_]+)"\s*,\s*)re"
      R"re(((?:"(?:[^"\\]|\\.)*"\s*)+)(?:,\s*(?:\{([^}]*)\}|(?:std::move\()?([A-Za-z_]\w*)))?)re");
  Metrics out;
  for (const char* dir : {"core", "receiver", "processor", "klarna", "storage"}) {
    for (const auto& f : std::filesystem::recursive_directory_iterator(root / dir)) {
      const auto ext = f.path().extension();
      if (ext != ".cpp" && ext != ".hpp") continue;
      const auto text = with_contract_names(read(f.path()), contract);
      for (std::sregex_iterator i(text.begin(), text.end(), call), end; i != end; ++i) {
        auto& m = out[(*i)[2]];
        m.kind = (*i)[1];
        if ((*i)[4].matched) m.labels.merge(quoted((*i)[4]));
        if ((*i)[5].matched) m.labels.merge(labels_of_variable(text, (*i)[5]));
      }
    }
  }
  return out;
}

// What is wrong with one PromQL expression (empty: nothing).
std::vector<std::string> check_expr(const std::string& expr, const std::string& legend,
                                    const Metrics& metrics) {
  static const std::regex name(R"re(\b(kpay_[a-z0-9_]+)(\{[^}]*\})?)re");
  static const std::regex matcher(R"re(([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=))re");
  static const std::regex grouping(R"re(\b(?:by|without)\s*\(([^)]*)\))re");
  static const std::regex legend_label(R"re(\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\})re");
  static const std::regex label_word(R"re([a-zA-Z_][a-zA-Z0-9_]*)re");
  std::vector<std::string> problems;
  std::vector<std::set<std::string>> named;  // each metric's labels (+ le for buckets)
  for (std::sregex_iterator i(expr.begin(), expr.end(), name), end; i != end; ++i) {
    std::string base = (*i)[1];
    std::string suffix;
    for (const char* s : {"_bucket", "_sum", "_count"}) {
      const std::string sfx = s;
      if (base.size() > sfx.size() && base.ends_with(sfx) && !metrics.contains(base)) {
        suffix = sfx;
        base.resize(base.size() - sfx.size());
      }
    }
    const auto found = metrics.find(base);
    if (found == metrics.end()) {
      problems.push_back("no daemon registers " + std::string((*i)[1]));
      continue;
    }
    if (!suffix.empty() && found->second.kind != "histogram") {
      problems.push_back(base + " is a " + found->second.kind + ", it has no " + suffix);
    }
    auto labels = found->second.labels;
    labels.insert("instance");
    labels.insert("job");
    if (suffix == "_bucket") labels.insert("le");
    const std::string selector = (*i)[2];
    for (std::sregex_iterator m(selector.begin(), selector.end(), matcher), e; m != e; ++m) {
      if (!labels.contains((*m)[1])) problems.push_back(base + " has no label " + (*m)[1].str());
    }
    named.push_back(std::move(labels));
  }
  if (named.empty()) problems.push_back("no kpay_ metric in '" + expr + "'");
  auto check_label = [&](const std::string& label, const std::string& where) {
    for (const auto& labels : named) {
      if (!labels.contains(label))
        problems.push_back(where + " names label " + label + " in '" + expr +
                           "', which its metric has not");
    }
  };
  for (std::sregex_iterator g(expr.begin(), expr.end(), grouping), end; g != end; ++g) {
    const std::string list = (*g)[1];
    for (std::sregex_iterator w(list.begin(), list.end(), label_word), e; w != e; ++w) {
      check_label((*w)[0], "by/without");
    }
  }
  for (std::sregex_iterator l(legend.begin(), legend.end(), legend_label), end; l != end; ++l) {
    check_label((*l)[1], "the legend");
  }
  return problems;
}

const std::filesystem::path kRoot = KPAY_SOURCE_DIR;

TEST(GrafanaDashboard, ReadsTheRegisteredMetricsFromTheCode) {
  const auto metrics = registered_metrics(kRoot);
  ASSERT_TRUE(metrics.contains("kpay_receiver_requests_total"));
  EXPECT_EQ(metrics.at("kpay_receiver_requests_total").labels, std::set<std::string>{"outcome"});
  EXPECT_EQ(metrics.at("kpay_processor_klarna_call_seconds").kind, "histogram");
  EXPECT_EQ(metrics.at("kpay_processor_klarna_calls_total").labels,
            (std::set<std::string>{"operation", "outcome"}));
  EXPECT_EQ(metrics.at("kpay_build_info").labels,
            (std::set<std::string>{"program", "version", "commit"}));
  EXPECT_TRUE(metrics.at("kpay_receiver_signing_keys").labels.empty());
}

// The checker itself finds what the dashboard test relies on it to find.
TEST(GrafanaDashboard, TheCheckRefusesUnknownMetricsAndLabels) {
  const auto metrics = registered_metrics(kRoot);
  const auto says = [&](const std::string& expr, const std::string& legend,
                        const std::string& what) {
    for (const auto& p : check_expr(expr, legend, metrics)) {
      if (p.find(what) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(check_expr("sum by (outcome) (rate(kpay_receiver_requests_total[5m]))", "{{outcome}}",
                         metrics)
                  .empty());
  EXPECT_TRUE(check_expr("histogram_quantile(0.9, sum by (le) "
                         "(rate(kpay_receiver_publish_latency_seconds_bucket[5m])))",
                         "", metrics)
                  .empty());
  EXPECT_TRUE(says("rate(kpay_receiver_requests_totl[5m])", "",
                   "no daemon registers kpay_receiver_requests_totl"));
  EXPECT_TRUE(
      says("rate(kpay_receiver_requests_total{family=\"x\"}[5m])", "", "has no label family"));
  EXPECT_TRUE(
      says("sum by (family) (rate(kpay_receiver_requests_total[5m]))", "", "names label family"));
  EXPECT_TRUE(
      says("sum(rate(kpay_receiver_requests_total[5m]))", "{{reason}}", "names label reason"));
  EXPECT_TRUE(says("rate(kpay_processor_batches_total_bucket[5m])", "", "has no _bucket"));
  EXPECT_TRUE(says("up", "", "no kpay_ metric"));
}

TEST(GrafanaDashboard, EveryPanelQueriesRegisteredMetricsThroughTheDataSourceVariable) {
  const auto metrics = registered_metrics(kRoot);
  std::ifstream in(kRoot / "config/grafana/klarna.json");
  ASSERT_TRUE(in) << "config/grafana/klarna.json is missing";
  const auto dash = nlohmann::json::parse(in);
  bool has_variable = false;
  for (const auto& v : dash.at("templating").at("list")) {
    has_variable |= v.value("type", "") == "datasource" && v.value("query", "") == "prometheus" &&
                    v.value("name", "") == "datasource";
  }
  EXPECT_TRUE(has_variable) << "no data-source variable 'datasource' of type prometheus";
  std::set<int> ids;
  std::size_t queries = 0;
  for (const auto& p : dash.at("panels")) {
    EXPECT_TRUE(ids.insert(p.at("id").get<int>()).second) << "panel id " << p.at("id");
    if (p.at("type") == "row") continue;
    const std::string title = p.at("title");
    EXPECT_EQ(p.at("datasource").at("uid"), "${datasource}") << title;
    ASSERT_TRUE(p.contains("targets") && !p.at("targets").empty()) << title;
    const auto& grid = p.at("gridPos");
    EXPECT_LE(grid.at("x").get<int>() + grid.at("w").get<int>(), 24) << title;
    for (const auto& t : p.at("targets")) {
      EXPECT_EQ(t.at("datasource").at("uid"), "${datasource}") << title;
      ++queries;
      for (const auto& problem : check_expr(t.at("expr"), t.value("legendFormat", ""), metrics)) {
        ADD_FAILURE() << "panel '" << title << "': " << problem;
      }
    }
  }
  EXPECT_GE(queries, 20u);
}

}  // namespace
