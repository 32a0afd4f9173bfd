#include "kpay/receiver/publisher.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <stdexcept>

namespace kpay::receiver {

KafkaPublisher::KafkaPublisher(const KafkaSettings& settings,
                               std::vector<std::string> required_topics, core::Registry& metrics)
    : errors_fatal_(metrics
                        .counter("kpay_receiver_kafka_fatal_errors_total",
                                 "Fatal producer errors (the producer must be restarted).")
                        .with({})),
      errors_(metrics.counter("kpay_receiver_kafka_errors_total",
                              "Errors reported by the Kafka client, by error name.", {"error"})),
      required_topics_(std::move(required_topics)) {
  core::KafkaProperties props = {
      {"bootstrap.servers", settings.bootstrap_servers},
      {"client.id", "klarna-receiver"},
      // Small batches: every message has a waiting HTTP request behind it.
      // Requests that arrive within this window share one produce request,
      // one broker wake-up and one batch of delivery reports.
      {"linger.ms", "1"},
      // Produce requests are small and latency-bound: Nagle plus delayed ACKs
      // would add tens of milliseconds to an acknowledgement.
      {"socket.nagle.disable", "true"},
      // A mistyped topic must show up in /readyz, not be created on the fly
      // (producers default to asking the broker to auto-create).
      {"allow.auto.create.topics", "false"},
      {"queue.buffering.max.messages", "100000"},
      {"log_level", "4"},
  };
  for (const auto& p : settings.properties) props.push_back(p);
  // Durability is not negotiable: applied last so pass-through properties
  // cannot weaken it.
  props.emplace_back("enable.idempotence", "true");
  props.emplace_back("acks", "all");
  props.emplace_back("message.timeout.ms", std::to_string(settings.publish_timeout.count()));
  // A 2xx waits for a success report: those must be delivered.
  props.emplace_back("delivery.report.only.error", "false");

  auto conf = core::make_kafka_conf(props);
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &KafkaPublisher::on_delivery);
  rd_kafka_conf_set_error_cb(conf.get(), &KafkaPublisher::on_error);
  rd_kafka_conf_set_opaque(conf.get(), this);
  producer_ = core::make_kafka(RD_KAFKA_PRODUCER, std::move(conf));
  enable_report_fd();
  try {
    prober_ = std::thread([this] { probe_loop(); });
  } catch (...) {
    disable_report_fd();
    throw;
  }
}

// librdkafka writes the payload (an eventfd's 8-byte increment) when the main
// queue, where delivery reports and client errors go, turns non-empty, and
// then not again until the queue has been served: one wake-up per batch.
void KafkaPublisher::enable_report_fd() {
  report_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (report_fd_ < 0) throw std::runtime_error("eventfd for Kafka delivery reports failed");
  static constexpr std::uint64_t kOne = 1;
  rd_kafka_queue_t* main_queue = rd_kafka_queue_get_main(producer_.get());
  rd_kafka_queue_io_event_enable(main_queue, report_fd_, &kOne, sizeof kOne);
  rd_kafka_queue_destroy(main_queue);  // the handle only; the queue stays
  // The producer has been running since rd_kafka_new(): an error queued before
  // the line above (Kafka down at start: the first connection refused at once)
  // left the queue non-empty with no wake-up written, and none ever would be
  // (only a queue turning non-empty writes one): no report served, every
  // webhook a 503 until a restart. One wake-up now serves whatever is there.
  (void)!::write(report_fd_, &kOne, sizeof kOne);
}

void KafkaPublisher::disable_report_fd() {
  if (report_fd_ < 0) return;
  rd_kafka_queue_t* main_queue = rd_kafka_queue_get_main(producer_.get());
  rd_kafka_queue_io_event_enable(main_queue, -1, nullptr, 0);
  rd_kafka_queue_destroy(main_queue);
  ::close(report_fd_);
  report_fd_ = -1;
}

void KafkaPublisher::serve_reports() {
  std::uint64_t ignored;
  while (::read(report_fd_, &ignored, sizeof ignored) > 0) {
  }
  // Served until empty: a report queued while the first round ran may have
  // found its wake-up already written (and just drained).
  while (rd_kafka_poll(producer_.get(), 0) > 0) {
  }
}

KafkaPublisher::~KafkaPublisher() {
  {
    std::lock_guard lock(probe_mu_);  // no lost wake-up for the prober
    stop_.store(true);
  }
  probe_cv_.notify_all();
  if (prober_.joinable()) prober_.join();
  disable_report_fd();
  // Reports for messages still queued are served by rd_kafka_destroy's purge;
  // run them so no callback (and no waiting request) is leaked.
  rd_kafka_purge(producer_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(producer_.get(), 0);
}

rd_kafka_resp_err_t KafkaPublisher::publish(const OutgoingMessage& m, DeliveryCallback& callback) {
  core::KafkaHeaders headers(rd_kafka_headers_new(m.header_count));
  for (std::size_t i = 0; i < m.header_count; ++i) {
    const auto& [name, value] = m.headers[i];
    rd_kafka_header_add(headers.get(), name, -1, value.data(), static_cast<ssize_t>(value.size()));
  }
  // produceva: the arguments as an array, not a va_list walked per call.
  std::array<rd_kafka_vu_t, 6> args{};
  args[0].vtype = RD_KAFKA_VTYPE_TOPIC;
  args[0].u.cstr = m.topic.c_str();
  args[1].vtype = RD_KAFKA_VTYPE_KEY;
  args[1].u.mem = {m.key.empty() ? nullptr : const_cast<char*>(m.key.data()), m.key.size()};
  args[2].vtype = RD_KAFKA_VTYPE_VALUE;
  args[2].u.mem = {const_cast<char*>(m.value.data()), m.value.size()};
  args[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  args[3].u.i = m.value_outlives_report ? 0 : RD_KAFKA_MSG_F_COPY;
  args[4].vtype = RD_KAFKA_VTYPE_HEADERS;
  args[4].u.headers = headers.get();
  args[5].vtype = RD_KAFKA_VTYPE_OPAQUE;
  args[5].u.ptr = &callback;
  rd_kafka_error_t* error = rd_kafka_produceva(producer_.get(), args.data(), args.size());
  if (error == nullptr) {
    headers.release();  // owned by the message now
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  const rd_kafka_resp_err_t err = rd_kafka_error_code(error);
  rd_kafka_error_destroy(error);
  errors_.with({rd_kafka_err2name(err)}).inc();
  return err;
}

void KafkaPublisher::on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* self = static_cast<KafkaPublisher*>(opaque);
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    self->errors_.with({rd_kafka_err2name(msg->err)}).inc();
  }
  // The callback's last use here: it may free itself (and the value) inside.
  auto* cb = static_cast<DeliveryCallback*>(msg->_private);
  if (cb != nullptr) cb->delivered({msg->err, msg->partition, msg->offset});
}

void KafkaPublisher::on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  auto* self = static_cast<KafkaPublisher*>(opaque);
  auto code = static_cast<rd_kafka_resp_err_t>(err);
  self->errors_.with({rd_kafka_err2name(code)}).inc();
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_fatal_error(rk, buf, sizeof buf);
    self->errors_fatal_.inc();
    self->fatal_.store(true);
    self->set_not_ready("kafka producer hit a fatal error: " + std::string(buf));
    self->log_.error("fatal Kafka producer error", {{"error", std::string_view(buf)}});
    return;
  }
  if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    self->set_not_ready("kafka unreachable: all brokers are down (" + std::string(reason) + ")");
  }
  self->log_.warn("Kafka client error", {{"error", rd_kafka_err2name(code)}, {"reason", reason}});
}

void KafkaPublisher::probe_loop() {
  // A metadata round trip proves brokers answer and the topics exist; /readyz
  // reports it.
  while (!stop_.load()) {
    const rd_kafka_metadata_t* md = nullptr;
    auto err = rd_kafka_metadata(producer_.get(), 1, nullptr, &md, 2000);
    std::string missing;
    if (md != nullptr) {
      for (const auto& want : required_topics_) {
        bool found = false;
        for (int i = 0; i < md->topic_cnt && !found; ++i) {
          const auto& t = md->topics[i];
          found = want == t.topic && t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0;
        }
        if (!found) {
          missing = want;
          break;
        }
      }
      rd_kafka_metadata_destroy(md);
    }
    char fatal_text[512] = "";
    if (rd_kafka_fatal_error(producer_.get(), fatal_text, sizeof fatal_text) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      fatal_.store(true);
    }
    if (fatal_.load()) {
      set_not_ready("kafka producer hit a fatal error: " + std::string(fatal_text));
    } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      set_not_ready(std::string("kafka unreachable: metadata request failed: ") +
                    rd_kafka_err2str(err));
    } else if (!missing.empty()) {
      set_not_ready("kafka topic '" + missing + "' does not exist");
    } else {
      ready_.store(true);
    }
    std::unique_lock lock(probe_mu_);
    probe_cv_.wait_for(lock, std::chrono::milliseconds(ready_ ? 5000 : 500),
                       [&] { return stop_.load(); });
  }
}

void KafkaPublisher::set_not_ready(std::string reason) {
  std::lock_guard lock(reason_mu_);
  not_ready_reason_ = std::move(reason);
  ready_.store(false);
}

std::string KafkaPublisher::not_ready_reason() const {
  if (ready_.load()) return {};
  std::lock_guard lock(reason_mu_);
  return not_ready_reason_;
}

int KafkaPublisher::flush(std::chrono::milliseconds timeout) {
  rd_kafka_flush(producer_.get(), static_cast<int>(timeout.count()));
  return rd_kafka_outq_len(producer_.get());
}

}  // namespace kpay::receiver
