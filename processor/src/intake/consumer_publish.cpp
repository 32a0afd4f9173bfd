// The processor's publications (state changes, command results, dead
// letters): produced from the store's publish queue, acknowledged by Kafka's
// delivery reports, retried when Kafka reports a failure.
#include "intake/consumer_metrics.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/processor/consumer.hpp"

namespace kpay::processor {

void Processor::on_delivery(const rd_kafka_message_t* msg) {
  auto seq = static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(msg->_private));
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    acknowledged_.push_back(seq);
    if (auto it = in_flight_.find(seq); it != in_flight_.end()) {
      metrics_->published.with({it->second.topic}).inc();
      in_flight_.erase(it);
    }
  } else {
    metrics_->publish_failures.inc();
    failed_.push_back(seq);
    log_.warn("publication failed; will retry",
              {{"error", rd_kafka_err2name(msg->err)}, {"seq", seq}});
  }
  metrics_->in_flight.set(static_cast<double>(in_flight_.size()));
}

void Processor::produce(const storage::PublishRow& row) {
  for (;;) {
    rd_kafka_headers_t* headers = rd_kafka_headers_new(2);
    if (!row.traceparent.empty()) {
      rd_kafka_header_add(headers, klarna::contract::header::traceparent, -1,
                          row.traceparent.data(), static_cast<ssize_t>(row.traceparent.size()));
    }
    if (row.reason.empty()) {
      rd_kafka_header_add(headers, klarna::contract::header::content_type, -1, "application/json",
                          -1);
    } else {
      rd_kafka_header_add(headers, klarna::contract::header::processor_dead_letter_reason, -1,
                          row.reason.data(), static_cast<ssize_t>(row.reason.size()));
    }
    auto err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_TOPIC(row.topic.c_str()),
        RD_KAFKA_V_KEY(row.key.data(), row.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(row.value.data()), row.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::intptr_t>(row.seq))),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      in_flight_[row.seq] = row;  // headers now owned by the message
      return;
    }
    rd_kafka_headers_destroy(headers);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      // Stays in the store's queue; republished on the next start.
      log_.error("cannot publish", {{"error", rd_kafka_err2name(err)}, {"seq", row.seq}});
      metrics_->publish_failures.inc();
      return;
    }
    if (stop_ != nullptr && stop_->load()) {
      // Kafka is not draining the queue and we are stopping: the row stays in
      // the store's queue (republished on the next start) rather than hold
      // the stop until message.timeout.ms frees room.
      metrics_->publish_failures.inc();
      return;
    }
    heartbeat_.beat();  // waiting on Kafka, not stuck
    rd_kafka_poll(producer_.get(), 100);
  }
}

void Processor::publish_later(std::vector<storage::PublishRow> rows) {
  std::lock_guard lock(external_mu_);
  for (auto& r : rows) external_.push_back(std::move(r));
}

void Processor::produce_external() {
  std::vector<storage::PublishRow> rows;
  {
    std::lock_guard lock(external_mu_);
    rows.swap(external_);
  }
  for (const auto& row : rows) produce(row);
}

void Processor::retry_failed_publications() {
  if (failed_.empty()) return;
  auto retry = std::move(failed_);
  failed_.clear();
  for (auto seq : retry) {
    auto it = in_flight_.find(seq);
    if (it == in_flight_.end()) continue;
    auto row = it->second;
    in_flight_.erase(it);
    produce(row);
  }
}

}  // namespace kpay::processor
