#include "sqlite_wal_gather.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>

namespace kpay::storage::wal_gather {

namespace {

// The unix VFS writes at most 128 KiB - 1 bytes per call (os_unix.c,
// seekAndWriteFd masks the count with 0x1ffff): stay below it.
constexpr int kBufferBytes = 120 * 1024;
static_assert(kBufferBytes < 0x20000);

sqlite3_vfs* g_real = nullptr;  // the default VFS, set once

// One open file. The real VFS's file object follows it in the same allocation
// (the VFS's szOsFile covers both).
struct File {
  sqlite3_file base;  // pMethods = kMethods
  bool is_wal = false;
  File* wal = nullptr;  // a database file: its connection's WAL, once open
  File* db = nullptr;   // a WAL: its database file
  char* buffer = nullptr;
  sqlite3_int64 buffer_offset = 0;
  int buffered = 0;
  int failed = SQLITE_OK;  // a write the barrier could not report

  sqlite3_file* real() {
    return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(this) + real_offset());
  }
  static constexpr std::size_t real_offset() {
    return (sizeof(File) + alignof(std::max_align_t) - 1) / alignof(std::max_align_t) *
           alignof(std::max_align_t);
  }
};

File* of(sqlite3_file* f) {
  return reinterpret_cast<File*>(f);
}
const sqlite3_io_methods& real_methods(File* f) {
  return *f->real()->pMethods;
}

// Writes what is buffered. On failure the bytes are dropped: the caller's
// operation fails, the transaction with it, and SQLite writes the frames again.
int flush(File* f) {
  if (f->buffered == 0) return SQLITE_OK;
  const int n = std::exchange(f->buffered, 0);
  return real_methods(f).xWrite(f->real(), f->buffer, n, f->buffer_offset);
}

bool overlaps_buffer(const File* f, sqlite3_int64 offset, int amount) {
  return f->buffered > 0 && offset < f->buffer_offset + f->buffered &&
         f->buffer_offset < offset + amount;
}

int x_close(sqlite3_file* file) {
  File* f = of(file);
  int rc = flush(f);
  if (f->db != nullptr) f->db->wal = nullptr;
  if (f->wal != nullptr) f->wal->db = nullptr;
  sqlite3_free(f->buffer);
  f->buffer = nullptr;
  const int closed = real_methods(f).xClose(f->real());
  return rc != SQLITE_OK ? rc : closed;
}

int x_read(sqlite3_file* file, void* out, int amount, sqlite3_int64 offset) {
  File* f = of(file);
  if (f->failed != SQLITE_OK) return f->failed;
  if (overlaps_buffer(f, offset, amount)) {
    if (int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  return real_methods(f).xRead(f->real(), out, amount, offset);
}

int x_write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  File* f = of(file);
  if (!f->is_wal) return real_methods(f).xWrite(f->real(), data, amount, offset);
  if (f->failed != SQLITE_OK) return f->failed;
  if (f->buffered > 0 && offset == f->buffer_offset + f->buffered &&
      f->buffered + amount <= kBufferBytes) {
    std::memcpy(f->buffer + f->buffered, data, static_cast<std::size_t>(amount));
    f->buffered += amount;
    return SQLITE_OK;
  }
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  if (f->buffer == nullptr && amount < kBufferBytes) {
    f->buffer = static_cast<char*>(sqlite3_malloc(kBufferBytes));
  }
  if (f->buffer == nullptr || amount >= kBufferBytes) {
    return real_methods(f).xWrite(f->real(), data, amount, offset);
  }
  std::memcpy(f->buffer, data, static_cast<std::size_t>(amount));
  f->buffer_offset = offset;
  f->buffered = amount;
  return SQLITE_OK;
}

int x_truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = of(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xTruncate(f->real(), size);
}

int x_sync(sqlite3_file* file, int flags) {
  File* f = of(file);
  if (f->failed != SQLITE_OK) return f->failed;
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xSync(f->real(), flags);
}

int x_file_size(sqlite3_file* file, sqlite3_int64* size) {
  File* f = of(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xFileSize(f->real(), size);
}

int x_lock(sqlite3_file* file, int level) {
  return real_methods(of(file)).xLock(of(file)->real(), level);
}
int x_unlock(sqlite3_file* file, int level) {
  return real_methods(of(file)).xUnlock(of(file)->real(), level);
}
int x_check_reserved_lock(sqlite3_file* file, int* out) {
  return real_methods(of(file)).xCheckReservedLock(of(file)->real(), out);
}

int x_file_control(sqlite3_file* file, int op, void* arg) {
  File* f = of(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xFileControl(f->real(), op, arg);
}

int x_sector_size(sqlite3_file* file) {
  return real_methods(of(file)).xSectorSize(of(file)->real());
}
int x_device_characteristics(sqlite3_file* file) {
  return real_methods(of(file)).xDeviceCharacteristics(of(file)->real());
}

int x_shm_map(sqlite3_file* file, int region, int size, int extend, void volatile** out) {
  return real_methods(of(file)).xShmMap(of(file)->real(), region, size, extend, out);
}
int x_shm_lock(sqlite3_file* file, int offset, int n, int flags) {
  return real_methods(of(file)).xShmLock(of(file)->real(), offset, n, flags);
}

// SQLite calls this on the database file before it writes the wal-index
// header (walIndexWriteHdr), i.e. before other connections can learn of new
// frames: they must be in the file by then.
void x_shm_barrier(sqlite3_file* file) {
  File* f = of(file);
  if (File* wal = f->wal; wal != nullptr && wal->buffered > 0) {
    if (int rc = flush(wal); rc != SQLITE_OK) {
      // Not reportable here (the call returns nothing); every later use of
      // the WAL through this connection fails instead of trusting it.
      wal->failed = rc;
      sqlite3_log(rc, "kpay-wal-gather: the WAL's buffered frames could not be written");
    }
  }
  real_methods(f).xShmBarrier(f->real());
}

int x_shm_unmap(sqlite3_file* file, int delete_flag) {
  return real_methods(of(file)).xShmUnmap(of(file)->real(), delete_flag);
}

int x_fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  File* f = of(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xFetch(f->real(), offset, amount, out);
}
int x_unfetch(sqlite3_file* file, sqlite3_int64 offset, void* p) {
  return real_methods(of(file)).xUnfetch(of(file)->real(), offset, p);
}

constexpr sqlite3_io_methods kMethods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = new (file) File{};
  const int rc = g_real->xOpen(g_real, name, f->real(), flags, out_flags);
  if (f->real()->pMethods == nullptr) {
    f->base.pMethods = nullptr;  // SQLite calls no xClose then
    return rc;
  }
  f->base.pMethods = &kMethods;
  if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) != 0) {
    f->is_wal = true;
    sqlite3_file* db = sqlite3_database_file_object(name);
    if (db != nullptr && db->pMethods == &kMethods) {
      f->db = of(db);
      of(db)->wal = f;
    }
  }
  return rc;
}

// The rest of the VFS is the real one's, called with the real VFS.
int x_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_real->xDelete(g_real, name, sync_dir);
}
int x_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_real->xAccess(g_real, name, flags, out);
}
int x_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void* x_dl_open(sqlite3_vfs*, const char* name) {
  return g_real->xDlOpen(g_real, name);
}
void x_dl_error(sqlite3_vfs*, int n, char* out) {
  g_real->xDlError(g_real, n, out);
}
void (*x_dl_sym(sqlite3_vfs*, void* handle, const char* symbol))(void) {
  return g_real->xDlSym(g_real, handle, symbol);
}
void x_dl_close(sqlite3_vfs*, void* handle) {
  g_real->xDlClose(g_real, handle);
}
int x_randomness(sqlite3_vfs*, int n, char* out) {
  return g_real->xRandomness(g_real, n, out);
}
int x_sleep(sqlite3_vfs*, int micros) {
  return g_real->xSleep(g_real, micros);
}
int x_current_time(sqlite3_vfs*, double* out) {
  return g_real->xCurrentTime(g_real, out);
}
int x_get_last_error(sqlite3_vfs*, int n, char* out) {
  return g_real->xGetLastError(g_real, n, out);
}
int x_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_real->xCurrentTimeInt64(g_real, out);
}
int x_set_system_call(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr p) {
  return g_real->xSetSystemCall(g_real, name, p);
}
sqlite3_syscall_ptr x_get_system_call(sqlite3_vfs*, const char* name) {
  return g_real->xGetSystemCall(g_real, name);
}
const char* x_next_system_call(sqlite3_vfs*, const char* name) {
  return g_real->xNextSystemCall(g_real, name);
}

sqlite3_vfs g_vfs{};

void register_vfs() {
  g_real = sqlite3_vfs_find(nullptr);
  g_vfs = sqlite3_vfs{
      3,
      static_cast<int>(File::real_offset()) + g_real->szOsFile,
      g_real->mxPathname,
      nullptr,
      "kpay-wal-gather",
      nullptr,
      x_open,
      x_delete,
      x_access,
      x_full_pathname,
      x_dl_open,
      x_dl_error,
      x_dl_sym,
      x_dl_close,
      x_randomness,
      x_sleep,
      x_current_time,
      x_get_last_error,
      x_current_time_int64,
      x_set_system_call,
      x_get_system_call,
      x_next_system_call,
  };
  sqlite3_vfs_register(&g_vfs, 0);
}

}  // namespace

const char* vfs_name() {
  static std::once_flag once;
  std::call_once(once, register_vfs);
  return g_vfs.zName;
}

}  // namespace kpay::storage::wal_gather
