// sim_bench: throughput of the sim itself.
//   1. API: full approve journeys (create, customer approve, final authorization,
//      capture) through SimApi::handle(), with idempotency keys, webhooks rendered
//      and signed for one subscription into a no-op sink.
//   2. Delivery: N signed webhooks POSTed by the dispatcher to a loopback endpoint
//      that answers 200 (the endpoint is single-threaded: a lower bound).
//
//   sim_bench --journeys 20000 --deliveries 5000 --workers 4
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "kpay/klarna/signature.hpp"
#include "kpay/sim/scenario.hpp"
#include "test_helpers.hpp"

using Clock = std::chrono::steady_clock;

namespace {
struct CountingSink : kpay::sim::DeliverySink {
  std::size_t n = 0, bytes = 0;
  void enqueue(kpay::sim::Delivery d) override {
    ++n;
    bytes += d.body.size();
  }
  std::string introspect_json(const kpay::sim::DeliveryFilter&) const override { return "{}"; }
  void reset() override {}
};
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"klarna-sim throughput"};
  int journeys = 20000, deliveries = 5000, workers = 4;
  app.add_option("--journeys", journeys, "approve journeys through the API");
  app.add_option("--deliveries", deliveries, "webhooks to deliver over loopback");
  app.add_option("--workers", workers, "dispatcher workers");
  CLI11_PARSE(app, argc, argv);

  {
    kpay::sim::SimClock clock;
    CountingSink sink;
    kpay::sim::ApiOptions o;
    o.max_calls_logged = 0;  // the call log is not what we measure
    kpay::sim::SimApi api(o, clock, &sink);
    api.add_signing_key("k", "bench-key");
    api.add_webhook("http://127.0.0.1:1/", {"*"}, "v2", "k");
    kpay::sim::ScenarioRunner runner(api);
    kpay::sim::ScenarioOptions s;
    s.journeys = journeys;
    s.rate_per_second = 1e9;
    auto t0 = Clock::now();
    runner.start(s);
    while (!runner.finished_once()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    // Every journey signs at least its request's and its transaction's webhooks.
    if (sink.n < 2 * static_cast<std::size_t>(journeys)) {
      std::fprintf(stderr, "INVALID RUN: %zu webhooks for %d journeys; no rate\n", sink.n,
                   journeys);
      return 1;
    }
    std::printf(
        "api: %d approve journeys (create, customer approve, final authorization, capture) in %.2f "
        "s = %.0f journeys/s, "
        "%zu webhooks signed (%.0f/s, avg %zu bytes)\n",
        journeys, secs, journeys / secs, sink.n, sink.n / secs, sink.n ? sink.bytes / sink.n : 0);
  }
  {
    kpay::sim::test::WebhookEndpoint endpoint([](int) { return 200; });
    kpay::sim::SimClock clock;
    kpay::sim::DispatcherOptions o;
    o.workers = workers;
    kpay::sim::WebhookDispatcher dispatcher(o, clock, kpay::sim::make_http_transport(false));
    std::string body(600, 'x');
    auto t0 = Clock::now();
    for (int i = 0; i < deliveries; ++i) {
      kpay::sim::Delivery d;
      d.url = endpoint.url();
      d.signing_key_id = "k";
      d.body = body;
      d.signature = kpay::klarna::hmac_sha256_hex("bench-key", d.body);
      dispatcher.enqueue(std::move(d));
    }
    while (dispatcher.counts().delivered < static_cast<std::size_t>(deliveries)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto counts = dispatcher.counts();
    if (counts.delivered != static_cast<std::size_t>(deliveries)) {
      std::fprintf(stderr, "INVALID RUN: %zu of %d webhooks delivered; no rate\n", counts.delivered,
                   deliveries);
      return 1;
    }
    std::printf(
        "delivery: %d webhooks (600 B, new connection each) in %.2f s = %.0f/s with %d workers\n",
        deliveries, secs, deliveries / secs, workers);
  }
  return 0;
}
