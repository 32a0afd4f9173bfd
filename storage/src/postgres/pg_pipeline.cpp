// Pipeline mode of the libpq layer (pg.hpp): statements sent back to back,
// their results read after one sync point.
#include "postgres/pg.hpp"

namespace kpay::storage::pg {

Pipeline::Pipeline(Connection& c) : c_(c) {
  if (PQenterPipelineMode(c_.handle()) != 1) throw error_from(c_.handle(), nullptr, "pipeline");
}

Pipeline::~Pipeline() {
  if (!active_) return;
  PGconn* h = c_.handle();
  // Left early (an exception): read up to the sync point, then leave
  // pipeline mode. Each statement's results end with a null.
  if (!pending_.empty() && PQstatus(h) == CONNECTION_OK && PQpipelineSync(h) == 1) {
    std::size_t ends = 0;
    while (ends <= pending_.size() && PQstatus(h) == CONNECTION_OK) {
      PGresult* r = PQgetResult(h);
      if (r == nullptr) {
        ++ends;
        continue;
      }
      const bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
      PQclear(r);
      if (sync) break;
    }
  }
  PQexitPipelineMode(h);
}

void Pipeline::send(std::string_view sql, const Params& p) {
  if (pending_.size() >= kMaxQueued) sync_part();
  PGconn* h = c_.handle();
  const std::string* name = c_.find_prepared(sql);
  if (name == nullptr) {
    auto it = sent_prepares_.find(std::string(sql));
    if (it == sent_prepares_.end()) {
      std::string fresh = c_.next_statement_name();
      std::string text(sql);
      if (PQsendPrepare(h, fresh.c_str(), text.c_str(), p.size(), p.types()) != 1) {
        throw error_from(h, nullptr, sql);
      }
      pending_.push_back({true, text, fresh});
      it = sent_prepares_.emplace(std::move(text), std::move(fresh)).first;
    }
    name = &it->second;
  }
  if (PQsendQueryPrepared(h, name->c_str(), p.size(), p.values(), p.lengths(), p.formats(), 0) !=
      1) {
    throw error_from(h, nullptr, sql);
  }
  pending_.push_back({false, std::string(sql), *name});
}

void Pipeline::read_one(const Pending& p) {
  PGconn* h = c_.handle();
  PGresult* r = PQgetResult(h);
  if (r == nullptr) {
    if (!error_) error_ = error_from(h, nullptr, p.sql);
    return;
  }
  while (PGresult* extra = PQgetResult(h)) PQclear(extra);  // up to the command's end
  ExecStatusType status = PQresultStatus(r);
  if (status == PGRES_PIPELINE_ABORTED) {  // not run: an earlier statement failed
    PQclear(r);
    return;
  }
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    if (!error_) error_ = error_from(h, r, p.sql);
    PQclear(r);
    return;
  }
  if (p.prepare) {
    c_.remember_prepared(p.sql, p.name);
    PQclear(r);
    return;
  }
  done_.emplace_back(r);
}

void Pipeline::sync_part() {
  PGconn* h = c_.handle();
  if (PQpipelineSync(h) != 1) throw error_from(h, nullptr, "pipeline sync");
  c_.count_round_trip();
  for (const Pending& p : pending_) {
    if (PQstatus(h) != CONNECTION_OK) {
      if (!error_) error_ = error_from(h, nullptr, "");
      break;
    }
    read_one(p);
  }
  pending_.clear();
  sent_prepares_.clear();
  if (PQstatus(h) == CONNECTION_OK) {
    PGresult* sync = PQgetResult(h);
    if (sync) PQclear(sync);
  }
}

std::vector<Result> Pipeline::results() {
  if (!pending_.empty()) sync_part();
  active_ = false;
  PQexitPipelineMode(c_.handle());
  if (error_) throw *error_;
  return std::move(done_);
}

}  // namespace kpay::storage::pg
