// OpenSSL's allocations routed to the process's malloc with a free that
// returns at once on a null pointer. Internal to the receiver; not installed.
#pragma once

namespace kpay::receiver {

// Must run before OpenSSL allocates anything (first thing in main). OpenSSL 3
// frees 32 null pointers each time it clears a thread's error queue, which
// Asio's TLS stream does on every SSL_read/SSL_write; under jemalloc each
// free(nullptr) takes the slow path (~40 instructions), together ~4,500
// instructions per TLS request (docs/performance/receiver.md). False when
// OpenSSL has already allocated with its own (it then keeps it).
bool route_openssl_memory();

}  // namespace kpay::receiver
