#include "kafka_support.hpp"

#include <chrono>
#include <stdexcept>

#include "kpay/core/kafka.hpp"
#include "kpay/core/traceparent.hpp"
#include "kpay/storage/state_store.hpp"

namespace kpay::test {

namespace {
struct Deliveries {
  std::vector<processor::InputMessage>* out;
  std::size_t done = 0;
  std::size_t failed = 0;
};

extern "C" void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* d = static_cast<Deliveries*>(opaque);
  auto index = reinterpret_cast<std::uintptr_t>(m->_private);
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++d->failed;
    return;
  }
  (*d->out)[index].partition = m->partition;
  (*d->out)[index].offset = m->offset;
  ++d->done;
}
}  // namespace

std::vector<processor::InputMessage> produce_events(const std::string& bootstrap,
                                                    const std::vector<TestEvent>& events) {
  std::vector<processor::InputMessage> out;
  out.reserve(events.size());
  for (const auto& e : events) out.push_back({e.topic, -1, -1, e.key, e.body});
  Deliveries d{&out};
  auto conf = core::make_kafka_conf({{"bootstrap.servers", bootstrap},
                                     {"enable.idempotence", "true"},
                                     {"acks", "all"},
                                     {"linger.ms", "5"},
                                     {"log_level", "3"}});
  rd_kafka_conf_set_opaque(conf.get(), &d);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), on_delivery);
  auto producer = core::make_kafka(RD_KAFKA_PRODUCER, std::move(conf));
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& e = events[i];
    const std::string traceparent = core::new_traceparent();
    for (;;) {
      auto err = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_TOPIC(e.topic.c_str()),
          RD_KAFKA_V_KEY(e.key.data(), e.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(e.body.data()), e.body.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADER("klarna-event-id", e.event_id.data(),
                            static_cast<ssize_t>(e.event_id.size())),
          RD_KAFKA_V_HEADER("klarna-event-type", e.event_type.data(),
                            static_cast<ssize_t>(e.event_type.size())),
          RD_KAFKA_V_HEADER("content-type", "application/json", -1),
          // As the receiver writes them (a new trace per webhook).
          RD_KAFKA_V_HEADER("received-at", "2026-12-07T01:00:00.000Z", -1),
          RD_KAFKA_V_HEADER("traceparent", traceparent.data(),
                            static_cast<ssize_t>(traceparent.size())),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(i))),
          RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        throw std::runtime_error(std::string("produce: ") + rd_kafka_err2str(err));
      }
      rd_kafka_poll(producer.get(), 50);
    }
    rd_kafka_poll(producer.get(), 0);
  }
  if (rd_kafka_flush(producer.get(), 60000) != RD_KAFKA_RESP_ERR_NO_ERROR || d.failed != 0 ||
      d.done != events.size()) {
    throw std::runtime_error("not every test event was delivered");
  }
  return out;
}

long long topic_message_count(const std::string& bootstrap, const std::string& topic,
                              int partitions) {
  auto consumer = core::make_kafka(
      RD_KAFKA_CONSUMER,
      core::make_kafka_conf(
          {{"bootstrap.servers", bootstrap}, {"group.id", "watermarks"}, {"log_level", "3"}}));
  long long total = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t low = 0, high = 0;
    if (rd_kafka_query_watermark_offsets(consumer.get(), topic.c_str(), p, &low, &high, 5000) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      total += high;
    }
  }
  rd_kafka_consumer_close(consumer.get());
  return total;
}

void apply_reference(const std::string& db_path, const klarna::Topics& topics,
                     const std::vector<processor::InputMessage>& messages, std::size_t batch_size) {
  storage::StateStore store(db_path);
  processor::BatchApplier applier(store, topics);
  for (std::size_t i = 0; i < messages.size(); i += batch_size) {
    auto n = std::min(batch_size, messages.size() - i);
    applier.apply(std::span(messages.data() + i, n));
  }
}

}  // namespace kpay::test
