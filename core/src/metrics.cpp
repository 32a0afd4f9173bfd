#include "kpay/core/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace kpay::core {

void Gauge::add(double d) noexcept {
  double cur = v_.load(std::memory_order_relaxed);
  while (!v_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) noexcept {
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                 bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  double cur = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  std::uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(acc);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  s.count = acc;
  return s;
}

std::vector<double> latency_buckets_seconds() {
  return {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

template <class Metric>
Metric& Family<Metric>::with(const std::vector<std::string>& values) {
  if (values.size() != labels_.size()) {
    throw std::invalid_argument("metric " + name_ + ": expected " +
                                std::to_string(labels_.size()) + " label values");
  }
  std::lock_guard lock(mu_);
  auto it = series_.find(values);
  if (it == series_.end()) it = series_.emplace(values, make_()).first;
  return *it->second;
}

template <class Metric>
Metric& Family<Metric>::with(std::initializer_list<std::string_view> values) {
  return with(std::vector<std::string>(values.begin(), values.end()));
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

CounterFamily& Registry::counter(std::string name, std::string help,
                                 std::vector<std::string> labels) {
  std::lock_guard lock(mu_);
  auto& f = counters_.emplace_back(std::make_unique<CounterFamily>(
      std::move(name), std::move(help), std::move(labels),
      [] { return std::make_unique<Counter>(); }));
  if (f->labels().empty()) f->with(std::vector<std::string>{});  // exposed as 0 from the start
  return *f;
}

GaugeFamily& Registry::gauge(std::string name, std::string help, std::vector<std::string> labels) {
  std::lock_guard lock(mu_);
  auto& f = gauges_.emplace_back(std::make_unique<GaugeFamily>(
      std::move(name), std::move(help), std::move(labels),
      [] { return std::make_unique<Gauge>(); }));
  if (f->labels().empty()) f->with(std::vector<std::string>{});
  return *f;
}

HistogramFamily& Registry::histogram(std::string name, std::string help,
                                     std::vector<std::string> labels, std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  auto& f = histograms_.emplace_back(std::make_unique<HistogramFamily>(
      std::move(name), std::move(help), std::move(labels),
      [bounds] { return std::make_unique<Histogram>(bounds); }));
  if (f->labels().empty()) f->with(std::vector<std::string>{});
  return *f;
}

void Registry::gauge_callback(std::string name, std::string help, std::vector<std::string> labels,
                              std::function<std::vector<GaugeSample>()> collect) {
  std::lock_guard lock(mu_);
  callbacks_.push_back({std::move(name), std::move(help), std::move(labels), std::move(collect)});
}

namespace {

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
    out.append(buf, r.ptr);
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
}

void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out.push_back('{');
  bool first = true;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!first) out.push_back(',');
    first = false;
    out += names[i];
    out += "=\"";
    append_label_value(out, values[i]);
    out.push_back('"');
  }
  if (!extra_name.empty()) {
    if (!first) out.push_back(',');
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out.push_back('"');
  }
  out.push_back('}');
}

void append_header(std::string& out, const std::string& name, const std::string& help,
                   std::string_view type) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " ";
  out += type;
  out.push_back('\n');
}

}  // namespace

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  out.reserve(4096);
  for (const auto& f : counters_) {
    append_header(out, f->name(), f->help(), "counter");
    f->for_each([&](const std::vector<std::string>& values, const Counter& c) {
      out += f->name();
      append_labels(out, f->labels(), values);
      out.push_back(' ');
      append_number(out, static_cast<double>(c.value()));
      out.push_back('\n');
    });
  }
  for (const auto& f : gauges_) {
    append_header(out, f->name(), f->help(), "gauge");
    f->for_each([&](const std::vector<std::string>& values, const Gauge& g) {
      out += f->name();
      append_labels(out, f->labels(), values);
      out.push_back(' ');
      append_number(out, g.value());
      out.push_back('\n');
    });
  }
  for (const auto& cb : callbacks_) {
    append_header(out, cb.name, cb.help, "gauge");
    for (const auto& s : cb.collect()) {
      out += cb.name;
      append_labels(out, cb.labels, s.label_values);
      out.push_back(' ');
      append_number(out, s.value);
      out.push_back('\n');
    }
  }
  for (const auto& f : histograms_) {
    append_header(out, f->name(), f->help(), "histogram");
    f->for_each([&](const std::vector<std::string>& values, const Histogram& h) {
      auto snap = h.snapshot();
      for (size_t i = 0; i <= snap.bounds.size(); ++i) {
        std::string le;
        if (i == snap.bounds.size()) {
          le = "+Inf";
        } else {
          append_number(le, snap.bounds[i]);
        }
        out += f->name() + "_bucket";
        append_labels(out, f->labels(), values, "le", le);
        out.push_back(' ');
        append_number(out, static_cast<double>(snap.cumulative[i]));
        out.push_back('\n');
      }
      out += f->name() + "_sum";
      append_labels(out, f->labels(), values);
      out.push_back(' ');
      append_number(out, snap.sum);
      out.push_back('\n');
      out += f->name() + "_count";
      append_labels(out, f->labels(), values);
      out.push_back(' ');
      append_number(out, static_cast<double>(snap.count));
      out.push_back('\n');
    });
  }
  return out;
}

void register_build_info(Registry& registry, const std::string& program,
                         const std::string& version, const std::string& commit) {
  std::vector<std::string> labels = {"program", "version"};
  std::vector<std::string> values = {program, version};
  if (!commit.empty()) {
    labels.emplace_back("commit");
    values.push_back(commit);
  }
  registry
      .gauge("kpay_build_info", "Always 1; the labels name the running build.", std::move(labels))
      .with(values)
      .set(1);
}

}  // namespace kpay::core
