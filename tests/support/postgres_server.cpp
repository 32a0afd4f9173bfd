#include "postgres_server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "child_process.hpp"

namespace kpay::test {

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kPort = "5432";  // names the socket file; no TCP listener

// Who the server runs as: this user, or `nobody` when this is root.
struct ServerUser {
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

ServerUser server_user() {
  if (::geteuid() != 0) return {};
  const passwd* pw = ::getpwnam("nobody");
  if (pw == nullptr)
    throw std::runtime_error("postgres_server: running as root and no user nobody");
  return {true, pw->pw_uid, pw->pw_gid};
}

std::string program(const std::string& name) {
  return std::string(KPAY_PG_BINDIR) + "/" + name;
}

// fork + exec of `argv` as the server's user, in `cwd`, output appended to
// `log`. Only async-signal-safe calls between fork and exec.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log, const std::string& cwd,
            bool die_with_parent) {
  const ServerUser who = server_user();
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char* env[] = {const_cast<char*>("LC_ALL=C"), const_cast<char*>("TZ=UTC"),
                 const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("postgres_server: fork failed");
  if (pid > 0) return pid;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int in = ::open("/dev/null", O_RDONLY);
  if (out < 0 || in < 0) _exit(125);
  ::dup2(in, 0);
  ::dup2(out, 1);
  ::dup2(out, 2);
  if (who.drop &&
      (::setgroups(0, nullptr) != 0 || ::setgid(who.gid) != 0 || ::setuid(who.uid) != 0)) {
    _exit(126);
  }
  // After setuid (which clears it): the server goes when the test goes.
  if (die_with_parent && (::prctl(PR_SET_PDEATHSIG, SIGQUIT) != 0 || ::getppid() != parent)) {
    _exit(124);
  }
  if (::chdir(cwd.c_str()) != 0) _exit(123);
  ::execve(args[0], args.data(), env);
  _exit(127);
}

// The exit status of `pid` (128 + signal when killed), or nullopt while it
// still runs after `timeout`.
std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (r < 0) return -1;
    if (Clock::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void run_to_end(const std::vector<std::string>& argv, const std::string& log,
                const std::string& cwd) {
  const pid_t pid = spawn(argv, log, cwd, true);
  auto status = wait_exit(pid, std::chrono::seconds(120));
  if (!status) {
    ::kill(pid, SIGKILL);
    wait_exit(pid, std::chrono::seconds(10));
  }
  if (status != 0) {
    throw std::runtime_error("postgres_server: " + argv[0] + " failed (status " +
                             (status ? std::to_string(*status) : "timeout") + "):\n" +
                             read_file(log));
  }
}

void chown_to_server_user(const std::string& path) {
  const ServerUser who = server_user();
  if (who.drop && ::chown(path.c_str(), who.uid, who.gid) != 0) {
    throw std::runtime_error("postgres_server: cannot chown " + path);
  }
}

std::string conf_string(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("''") : std::string(1, c);
  return out + "'";
}

}  // namespace

PostgresServer::PostgresServer(Options options) : options_(std::move(options)) {
  try {
    init_cluster();
    start();
    create_database(options_.database);
  } catch (...) {
    if (pid_ > 0) shutdown(SIGQUIT);
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    throw;
  }
}

PostgresServer::~PostgresServer() {
  if (pid_ > 0) shutdown(SIGQUIT);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

// initdb of a trust-authenticated cluster, made once per machine (and server
// user and PostgreSQL) and copied for each server: initdb takes seconds, a
// copy of its ~40 MB a fraction of one. Made under a lock, in a temp dir
// renamed into place, so a template is complete or absent.
std::string PostgresServer::trust_template() {
  const ServerUser who = server_user();
  const auto base = std::filesystem::temp_directory_path() /
                    ("kpay-pg-template-" + std::to_string(who.drop ? who.uid : ::geteuid()) + "-" +
                     std::to_string(std::hash<std::string>{}(KPAY_PG_BINDIR)));
  const std::string data = base.string() + "/data";
  const std::string lock_path = base.string() + ".lock";
  const int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
    throw std::runtime_error("postgres_server: cannot lock " + lock_path);
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  if (std::filesystem::exists(data + "/PG_VERSION")) return data;
  const std::string building = make_temp_dir("pg-template");
  chown_to_server_user(building);
  run_to_end({program("initdb"), "-D", building + "/data", "-U", "kpay", "-E", "UTF8", "--locale=C",
              "-N", "-A", "trust"},
             building + "/initdb.log", building);
  std::error_code ec;
  std::filesystem::remove_all(base, ec);
  std::filesystem::rename(building, base);
  return data;
}

void PostgresServer::init_cluster() {
  dir_ = make_temp_dir("pg");
  chown_to_server_user(dir_);
  if (!options_.password) {
    run_to_end({"/bin/cp", "-a", trust_template(), dir_ + "/data"}, dir_ + "/copy.log", dir_);
  } else {
    const std::string pwfile = dir_ + "/pwfile";
    {
      std::ofstream out(pwfile);
      out << *options_.password << "\n";
    }
    ::chmod(pwfile.c_str(), 0600);
    chown_to_server_user(pwfile);
    run_to_end({program("initdb"), "-D", dir_ + "/data", "-U", "kpay", "-E", "UTF8", "--locale=C",
                "-N", "-A", "scram-sha-256", "--pwfile=" + pwfile},
               dir_ + "/initdb.log", dir_);
    std::filesystem::remove(pwfile);
  }
  std::ofstream conf(dir_ + "/data/postgresql.conf", std::ios::app);
  conf << "\n# tests/support/postgres_server.cpp\n"
       << "listen_addresses = ''\n"
       << "unix_socket_directories = " << conf_string(dir_) << "\n"
       << "port = " << kPort << "\n"
       << "fsync = off\nfull_page_writes = off\n"
       << "shared_buffers = 16MB\nmax_connections = 60\n"
       << "max_wal_size = 256MB\nlog_min_messages = warning\n";
}

std::string PostgresServer::dsn(const std::string& database) const {
  return "host=" + dir_ + " port=" + kPort + " dbname=" + database + " user=kpay";
}

void PostgresServer::start() {
  if (pid_ > 0) return;
  pid_ = spawn({program("postgres"), "-D", dir_ + "/data"}, dir_ + "/server.log", dir_, true);
  const std::string probe = dsn("postgres") + " connect_timeout=2";
  const auto end = Clock::now() + std::chrono::seconds(60);
  while (PQping(probe.c_str()) != PQPING_OK) {
    if (auto status = wait_exit(pid_, std::chrono::milliseconds(0))) {
      pid_ = -1;
      throw std::runtime_error("postgres_server: postgres exited (status " +
                               std::to_string(*status) + "):\n" + log());
    }
    if (Clock::now() >= end) {
      shutdown(SIGQUIT);
      throw std::runtime_error("postgres_server: not ready within 60 s:\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void PostgresServer::shutdown(int sig) {
  if (pid_ <= 0) return;
  ::kill(pid_, sig);
  if (!wait_exit(pid_, std::chrono::seconds(60))) {
    ::kill(pid_, SIGKILL);
    wait_exit(pid_, std::chrono::seconds(10));
  }
  pid_ = -1;
}

void PostgresServer::stop() {
  shutdown(SIGINT);
}

void PostgresServer::crash() {
  shutdown(SIGQUIT);
}

void PostgresServer::restart() {
  stop();
  start();
}

// Runs `sql` (one or more statements) as the test's superuser in `database`;
// throws with the server's message when it fails.
void PostgresServer::execute(const std::string& sql, const std::string& database) {
  std::vector<const char*> keys{"host", "port", "dbname", "user"};
  std::vector<const char*> values{dir_.c_str(), kPort, database.c_str(), "kpay"};
  if (options_.password) {
    keys.push_back("password");
    values.push_back(options_.password->c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* c = PQconnectdbParams(keys.data(), values.data(), 0);
  std::string error;
  if (PQstatus(c) != CONNECTION_OK) {
    error = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, sql.c_str());
    const auto status = PQresultStatus(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) error = PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(c);
  if (!error.empty()) throw std::runtime_error("postgres_server: " + error);
}

void PostgresServer::execute(const std::string& sql) {
  execute(sql, options_.database);
}

void PostgresServer::fail_commits_writing(const std::string& table, int count) {
  const std::string seq = table + "_commits";
  const std::string fn = "kpay_test_fail_" + table + "_commits";
  execute("CREATE SEQUENCE " + seq + "; CREATE FUNCTION " + fn +
          "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF nextval('" + seq +
          "') <= " + std::to_string(count) +
          " THEN RAISE EXCEPTION 'injected at commit' USING ERRCODE = '40001'; END IF; "
          "RETURN NULL; END $$; CREATE CONSTRAINT TRIGGER " +
          fn + " AFTER INSERT ON " + table +
          " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION " + fn + "();");
}

void PostgresServer::create_database(const std::string& name) {
  std::string id = "\"";
  for (char ch : name) id += (ch == '"') ? std::string("\"\"") : std::string(1, ch);
  execute("CREATE DATABASE " + id + "\"", "postgres");
}

std::string PostgresServer::log() const {
  return read_file(dir_ + "/server.log");
}

}  // namespace kpay::test
