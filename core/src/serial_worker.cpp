#include "kpay/core/serial_worker.hpp"

#include <utility>

namespace kpay::core {

SerialWorker::SerialWorker() : thread_([this] { loop(); }) {}

SerialWorker::~SerialWorker() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SerialWorker::submit(std::function<void()> job) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !job_; });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  job_ = std::move(job);
  lock.unlock();
  cv_.notify_all();
}

void SerialWorker::wait_idle() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !job_; });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

bool SerialWorker::idle() const {
  std::lock_guard lock(mu_);
  return !job_;
}

void SerialWorker::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return job_ || closing_; });
    if (!job_) return;  // closing with nothing in hand
    lock.unlock();
    std::exception_ptr error;
    try {
      job_();  // the owner does not touch job_ while it is set
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    error_ = error;
    job_ = nullptr;
    cv_.notify_all();
  }
}

}  // namespace kpay::core
