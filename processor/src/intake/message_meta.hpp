// A consumed message's metadata: its trace context (a new trace when it has
// no valid traceparent header), a command's signature headers, the Kafka
// timestamp. Internal to the processor.
#pragma once

#include <librdkafka/rdkafka.h>

#include "kpay/processor/batch_applier.hpp"

namespace kpay::processor {

// Fills in.traceparent, in.timestamp_ms and (`command`) in.headers from `m`.
void read_message_meta(const rd_kafka_message_t* m, InputMessage& in, bool command);

}  // namespace kpay::processor
